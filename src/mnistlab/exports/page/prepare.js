/*
 * mnistlab's `images.prepare` in JavaScript: a drawing brought into MNIST's form (white ink on
 * black, fitted into a 20x20 box keeping its aspect ratio, centred by centre of mass in 28x28),
 * step by step as the Python path does it, so that the page gives the model the same 28x28
 * image as `mnistlab predict` and `mnistlab serve` would (tests/test_exports_web.py: within one
 * grey level on the same drawings). Each function names the NumPy, SciPy or Pillow call it
 * reproduces. Pictures of more than 512 pixels a side are not handled: the Python path shrinks
 * those first, and the page's canvas is 280.
 *
 *   const { pixels, inverted } = mnistlabPrepare.prepare(ctx.getImageData(0, 0, w, h));
 *   // pixels: Float32Array(784), row by row, in [0, 1]; throws Error("no ink found ...")
 */
(function (root) {
"use strict";
const BOX = 20, SIDE = 28, CENTRE = 14.0, STROKE = 2.6 / BOX, MIN_CONTRAST = 0.08;
const WORK_SIDE = 512;

class NoInk extends Error {}
function noInk() {
  return new NoInk("no ink found: the drawing is blank or its strokes are too faint");
}

// A 2-D array of float64 values
function grid(height, width, fill) {
  const data = new Float64Array(height * width);
  if (fill) data.fill(fill);
  return { height, width, data };
}

// np.median: the middle value, or the mean of the two middle values
function median(values) {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length, half = n >> 1;
  return n % 2 ? sorted[half] : (sorted[half - 1] + sorted[half]) / 2;
}

// np.percentile(values, q), its default 'linear' method
function percentile(values, q) {
  const sorted = Float64Array.from(values).sort();
  const n = sorted.length, t = q / 100;
  const index = Math.min(Math.max(n * t + (1 + t * (1 - 1 - 1)) - 1, 0), n - 1);
  const below = Math.floor(index), above = Math.min(below + 1, n - 1);
  const gamma = index - below, a = sorted[below], b = sorted[above], diff = b - a;
  return gamma >= 0.5 ? b - diff * (1 - gamma) : a + diff * gamma;
}

// Python's round(): halves go to the even neighbour
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// scipy.ndimage's mode 'reflect' (d c b a | a b c d | d c b a)
function reflect(i, n) {
  for (;;) {
    if (i < 0) i = -i - 1;
    else if (i >= n) i = 2 * n - i - 1;
    else return i;
  }
}

// images.grey_levels for an RGBA picture: Pillow's RGBA -> LA conversion (ITU-R 601-2 luma in
// fixed point), then the transparent pixels laid on the background the picture implies
function greyLevels(image) {
  const { width, height, data } = image;
  const n = width * height;
  const grey = new Float64Array(n), alpha = new Float64Array(n);
  const opaque = [];
  for (let i = 0; i < n; i++) {
    const r = data[4 * i], g = data[4 * i + 1], b = data[4 * i + 2];
    grey[i] = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) / 255;
    alpha[i] = data[4 * i + 3] / 255;
    if (alpha[i] > 0.5) opaque.push(grey[i]);
  }
  const out = grid(height, width);
  if (!opaque.length) return out;  // fully transparent: nothing drawn
  let ground;
  if (opaque.length / n < 0.5) ground = median(opaque) > 0.5 ? 0.0 : 1.0;
  else ground = median(opaque);
  for (let i = 0; i < n; i++) out.data[i] = grey[i] * alpha[i] + ground * (1 - alpha[i]);
  return out;
}

// scipy.ndimage.gaussian_filter(input, sigma): truncate 4, mode 'reflect', rows then columns
function gaussianFilter(input, sigma) {
  const radius = Math.trunc(4.0 * sigma + 0.5);
  const weights = [];
  let total = 0;
  for (let x = -radius; x <= radius; x++) {
    const w = Math.exp((-0.5 / (sigma * sigma)) * x * x);
    weights.push(w);
    total += w;
  }
  for (let k = 0; k < weights.length; k++) weights[k] /= total;
  const { height, width } = input;
  const along0 = grid(height, width), out = grid(height, width);
  for (let r = 0; r < height; r++)
    for (let c = 0; c < width; c++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++)
        s += input.data[reflect(r + k, height) * width + c] * weights[k + radius];
      along0.data[r * width + c] = s;
    }
  for (let r = 0; r < height; r++)
    for (let c = 0; c < width; c++) {
      let s = 0;
      for (let k = -radius; k <= radius; k++)
        s += along0.data[r * width + reflect(c + k, width)] * weights[k + radius];
      out.data[r * width + c] = s;
    }
  return out;
}

// scipy.ndimage's minimum_filter / maximum_filter of a rectangle: one axis at a time; the
// window of output i is input[i - size//2 - origin ... i + size - size//2 - 1 - origin],
// found for a whole line at once with a monotonic queue (the page's 70-pixel windows would
// otherwise take 70 comparisons a pixel)
function minMaxFilter(input, sizes, origins, takeMax) {
  let current = input;
  for (let axis = 0; axis < 2; axis++) {
    const size = sizes[axis], origin = origins[axis];
    const before = (size >> 1) + origin;
    const { height, width } = current;
    const out = grid(height, width);
    const n = axis === 0 ? height : width, lines = axis === 0 ? width : height;
    const at = axis === 0 ? (line, i) => i * width + line : (line, i) => line * width + i;
    const extended = new Float64Array(n + size - 1);
    const queue = new Int32Array(n + size - 1);
    for (let line = 0; line < lines; line++) {
      for (let j = 0; j < extended.length; j++)
        extended[j] = current.data[at(line, reflect(j - before, n))];
      let head = 0, tail = 0;
      for (let j = 0; j < extended.length; j++) {
        const v = extended[j];
        while (tail > head && (takeMax ? extended[queue[tail - 1]] <= v : extended[queue[tail - 1]] >= v)) tail--;
        queue[tail++] = j;
        if (queue[head] <= j - size) head++;
        if (j >= size - 1) out.data[at(line, j - size + 1)] = extended[queue[head]];
      }
    }
    current = out;
  }
  return current;
}

// scipy.ndimage.grey_erosion(input, size=sizes)
function greyErosion(input, sizes) {
  return minMaxFilter(input, sizes, [0, 0], false);
}

// scipy.ndimage.grey_dilation(input, size=sizes): the window mirrored, so an even size's
// window leans the other way (origin -1)
function greyDilation(input, sizes) {
  return minMaxFilter(input, sizes, sizes.map(s => (s & 1 ? 0 : -1)), true);
}

// A cross (4-neighbour) binary dilation or erosion, pixels outside counting as false:
// scipy.ndimage.binary_dilation / binary_erosion with their default structure
function crossStep(mask, height, width, dilate) {
  const out = new Uint8Array(mask.length);
  for (let r = 0; r < height; r++)
    for (let c = 0; c < width; c++) {
      const at = (rr, cc) => (rr < 0 || rr >= height || cc < 0 || cc >= width ? 0 : mask[rr * width + cc]);
      const around = [at(r, c), at(r - 1, c), at(r + 1, c), at(r, c - 1), at(r, c + 1)];
      out[r * width + c] = dilate ? (around.some(v => v) ? 1 : 0) : (around.every(v => v) ? 1 : 0);
    }
  return out;
}

// scipy.ndimage.label with a 3x3 structure (8 neighbours): a component number for each pixel
function label(mask, height, width) {
  const labels = new Int32Array(mask.length);
  let count = 0;
  const stack = [];
  for (let start = 0; start < mask.length; start++) {
    if (!mask[start] || labels[start]) continue;
    labels[start] = ++count;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop(), r = Math.floor(p / width), c = p % width;
      for (let dr = -1; dr <= 1; dr++)
        for (let dc = -1; dc <= 1; dc++) {
          const rr = r + dr, cc = c + dc;
          if (rr < 0 || rr >= height || cc < 0 || cc >= width) continue;
          const q = rr * width + cc;
          if (mask[q] && !labels[q]) { labels[q] = count; stack.push(q); }
        }
    }
  }
  return { labels, count };
}

// images.find_ink: the ink's pixels (in pieces that matter) and their bounding box
function findInk(ink) {
  const { height, width, data } = ink;
  const med = median(data);
  const spread = 1.4826 * median(data.map(v => Math.abs(v - med)));
  const floor = med + 5 * spread;
  let peak = -Infinity;
  for (const v of data) if (v > peak) peak = v;
  if (peak - floor < MIN_CONTRAST) throw noInk();
  const threshold = floor + 0.25 * (peak - floor);
  const mask = data.map(v => (v > threshold ? 1 : 0));
  const { labels, count } = label(mask, height, width);
  const mass = new Float64Array(count + 1);
  for (let i = 0; i < data.length; i++) if (labels[i]) mass[labels[i]] += data[i];
  let most = 0;
  for (let k = 1; k <= count; k++) if (mass[k] > most) most = mass[k];
  let core = new Uint8Array(data.length), cores = 0;
  for (let i = 0; i < data.length; i++)
    if (labels[i] && mass[labels[i]] >= 0.1 * most) { core[i] = 1; cores++; }
  const side = Math.max(height, width);
  if (cores < Math.max(4, (side / 128) ** 2)) throw noInk();
  core = crossStep(crossStep(core, height, width, true), height, width, true);
  const pieces = new Uint8Array(data.length);
  const seen = floor + 0.15 * (peak - floor);
  let top = height, left = width, bottom = -1, right = -1;
  for (let r = 0; r < height; r++)
    for (let c = 0; c < width; c++) {
      const i = r * width + c;
      pieces[i] = core[i] && data[i] > floor ? 1 : 0;
      if (pieces[i] && data[i] > seen) {
        top = Math.min(top, r); bottom = Math.max(bottom, r);
        left = Math.min(left, c); right = Math.max(right, c);
      }
    }
  return { pieces, box: [top, left, bottom + 1, right + 1] };
}

// images.thicken: the strokes' core scaled to 1, strokes thinner than MNIST's widened
function thicken(crop, pieces) {
  const { height, width } = crop;
  const inked = [];
  for (let i = 0; i < crop.data.length; i++) if (pieces[i]) inked.push(crop.data[i]);
  const coreLevel = percentile(inked, 65);
  const scaled = grid(height, width);
  const solid = new Uint8Array(crop.data.length);
  let solids = 0;
  for (let i = 0; i < crop.data.length; i++) {
    scaled.data[i] = Math.min(Math.max(crop.data[i] / Math.max(coreLevel, 1e-6), 0), 1);
    solid[i] = scaled.data[i] > 0.5 ? 1 : 0;
    solids += solid[i];
  }
  const eroded = crossStep(solid, height, width, false);
  let boundary = 0;
  for (let i = 0; i < solid.length; i++) if (solid[i] && !eroded[i]) boundary++;
  const strokeWidth = (2 * solids) / Math.max(boundary, 1);
  const wanted = STROKE * Math.max(height, width);
  const grow = Math.trunc(roundHalfEven(wanted - strokeWidth));
  return grow >= 1 ? greyDilation(scaled, [grow + 1, grow + 1]) : scaled;
}

// Pillow's precompute_coeffs for its bilinear filter (Resample.c): which input pixels make
// each output pixel, and with what weights; shrinking widens the filter to average areas
function coefficients(inSize, outSize) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1.0);
  const support = 1.0 * filterscale;
  const bounds = [], weights = [];
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    const xmin = Math.max(Math.trunc(center - support + 0.5), 0);
    const xmax = Math.min(Math.trunc(center + support + 0.5), inSize) - xmin;
    const k = [];
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1.0 ? 1.0 - t : 0.0;
      k.push(w);
      ww += w;
    }
    if (ww !== 0.0) for (let x = 0; x < xmax; x++) k[x] /= ww;
    bounds.push([xmin, xmax]);
    weights.push(k);
  }
  return { bounds, weights };
}

// Image.fromarray(float32).resize((w, h), BILINEAR) on Pillow's "F" mode: a horizontal pass
// then a vertical one, each summed in double precision and stored as float32
function resizeBilinear(input, outWidth, outHeight) {
  let current = { height: input.height, width: input.width, data: Float32Array.from(input.data) };
  if (outWidth !== current.width) {
    const { bounds, weights } = coefficients(current.width, outWidth);
    const out = { height: current.height, width: outWidth, data: new Float32Array(current.height * outWidth) };
    for (let r = 0; r < current.height; r++)
      for (let xx = 0; xx < outWidth; xx++) {
        const [xmin, xmax] = bounds[xx];
        let s = 0.0;
        for (let x = 0; x < xmax; x++) s += current.data[r * current.width + x + xmin] * weights[xx][x];
        out.data[r * outWidth + xx] = s;
      }
    current = out;
  }
  if (outHeight !== current.height) {
    const { bounds, weights } = coefficients(current.height, outHeight);
    const out = { height: outHeight, width: current.width, data: new Float32Array(outHeight * current.width) };
    for (let yy = 0; yy < outHeight; yy++)
      for (let c = 0; c < current.width; c++) {
        const [ymin, ymax] = bounds[yy];
        let s = 0.0;
        for (let y = 0; y < ymax; y++) s += current.data[(y + ymin) * current.width + c] * weights[yy][y];
        out.data[yy * current.width + c] = s;
      }
    current = out;
  }
  return current;
}

// images.fit_and_centre: into 20x20 keeping the aspect ratio, then centred by centre of mass
function fitAndCentre(crop) {
  const { height, width } = crop;
  const factor = BOX / Math.max(height, width);
  const w = Math.max(1, roundHalfEven(width * factor)), h = Math.max(1, roundHalfEven(height * factor));
  const small = resizeBilinear(crop, w, h);
  const box = new Float64Array(w * h);
  let top = 0;
  for (let i = 0; i < box.length; i++) {
    box[i] = Math.min(Math.max(small.data[i], 0), 1);
    if (box[i] > top) top = box[i];
  }
  if (top <= 0) throw noInk();
  let total = 0, rowSum = 0, colSum = 0;
  for (let r = 0; r < h; r++)
    for (let c = 0; c < w; c++) {
      const v = (box[r * w + c] /= top);
      total += v; rowSum += v * r; colSum += v * c;
    }
  const rows = rowSum / total, cols = colSum / total;
  const clip = (v, hi) => Math.min(Math.max(v, 0), hi);
  const y0 = clip(roundHalfEven(CENTRE - rows), SIDE - h), x0 = clip(roundHalfEven(CENTRE - cols), SIDE - w);
  const pixels = new Float32Array(SIDE * SIDE);
  for (let r = 0; r < h; r++)
    for (let c = 0; c < w; c++) pixels[(y0 + r) * SIDE + x0 + c] = box[r * w + c];
  return pixels;
}

// images.prepare, for an ImageData of at most WORK_SIDE pixels a side
function prepare(image) {
  if (Math.max(image.width, image.height) > WORK_SIDE)
    throw new Error(`pictures of more than ${WORK_SIDE} pixels a side are not handled here`);
  const grey = greyLevels(image);
  const side = Math.max(grey.height, grey.width);
  const smooth = gaussianFilter(grey, Math.min(1.0, side / 256));
  const background = median(smooth.data);
  let low = Infinity, high = -Infinity;
  for (const v of smooth.data) { if (v < low) low = v; if (v > high) high = v; }
  const inverted = background - low > high - background;
  const window = Math.max(3, Math.floor(side / 4));
  const sizes = [window, window];
  const ink = grid(smooth.height, smooth.width);
  if (inverted) {  // grey_closing: a dilation, then an erosion
    const closed = greyErosion(greyDilation(smooth, sizes), sizes);
    for (let i = 0; i < ink.data.length; i++) ink.data[i] = closed.data[i] - smooth.data[i];
  } else {  // grey_opening: an erosion, then a dilation
    const opened = greyDilation(greyErosion(smooth, sizes), sizes);
    for (let i = 0; i < ink.data.length; i++) ink.data[i] = smooth.data[i] - opened.data[i];
  }
  const { pieces, box } = findInk(ink);
  const [top, left, bottom, right] = box;
  const crop = grid(bottom - top, right - left);
  const cropPieces = new Uint8Array(crop.data.length);
  for (let r = top; r < bottom; r++)
    for (let c = left; c < right; c++) {
      const i = r * ink.width + c, j = (r - top) * crop.width + (c - left);
      cropPieces[j] = pieces[i];
      crop.data[j] = pieces[i] ? ink.data[i] : 0.0;
    }
  return { pixels: fitAndCentre(thicken(crop, cropPieces)), inverted };
}

root.mnistlabPrepare = { prepare, NoInk };
})(typeof window !== "undefined" ? window : globalThis);
