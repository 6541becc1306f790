"""The web app: a drawing page and an HTTP API over one trained run (`mnistlab serve`).

app = create_app("runs/mine")      # a FastAPI app; serve(app, host, port) runs uvicorn
"""

from mnistlab.web.app import build_app, check_port, create_app, serve

__all__ = ["build_app", "check_port", "create_app", "serve"]
