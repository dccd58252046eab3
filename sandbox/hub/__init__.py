"""The analyst side of dp-sandbox: JupyterHub configuration, login and isolation.

- ``authenticator.GatewayAuthenticator`` checks passwords against the gateway and
  admits only analysts (researcher, enterprise).
- ``spawner.SandboxSpawner`` runs each analyst's Jupyter server as its own system
  user inside bubblewrap, with cgroup limits and a short-lived sandbox token.
- ``jupyterhub_config.py`` wires them together; ``run.py`` starts the hub.
- ``build_env.py`` builds the world-readable Python environment of the sandboxes.

Nothing here is imported inside a sandbox: only ``sandbox.client`` is installed there.
"""
