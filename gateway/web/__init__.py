"""The web console for administrators, auditors and analysts (server-rendered, /console)."""

from gateway.web.routes import router

__all__ = ["router"]
