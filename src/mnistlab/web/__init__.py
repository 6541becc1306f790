"""The web app: a drawing page and an HTTP API over one trained run (`mnistlab serve`).

app = create_app("runs/mine", host_names("127.0.0.1"))  # a FastAPI app answering to this
serve(app, "127.0.0.1", 8000)                             # machine's names; uvicorn runs it
"""

from mnistlab.web.app import build_app, check_port, create_app, host_names, serve

__all__ = ["build_app", "check_port", "create_app", "host_names", "serve"]
