"""One router per resource; :func:`kshot.server.app.create_app` includes them all."""
