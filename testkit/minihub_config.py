"""A bare JupyterHub for tests of hub services without the embedded stack.

Loaded with ``jupyterhub -f testkit/minihub_config.py``; everything that varies is
read from the JSON file named by ``$LAKEHUB_MINIHUB`` (written by
``testkit.minihub.MiniHub``): ports, services, roles and the login.  Logins are
JupyterHub's DummyAuthenticator with auth state on, so a test can give a user the auth
state an OAuth login would have left (``PATCH /users/{name}`` with ``auth_state``), or
GenericOAuthenticator against a real identity provider.
"""

import json
import os
from pathlib import Path

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)
params = json.loads(Path(os.environ["LAKEHUB_MINIHUB"]).read_text())
folder = Path(params["folder"])

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = params["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = params["hub_port"]
c.ConfigurableHTTPProxy.command = [params["proxy_command"]]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{params['proxy_api_port']}"
c.ConfigurableHTTPProxy.pid_file = str(folder / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{folder / 'hub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(folder / "cookie_secret")
c.JupyterHub.pid_file = str(folder / "jupyterhub.pid")
c.JupyterHub.authenticator_class = params.get("authenticator_class", "dummy")
c.Authenticator.allow_all = True
c.Authenticator.enable_auth_state = True
for name, value in params.get("generic_oauth", {}).items():  # an OIDC login (tests)
    setattr(c.GenericOAuthenticator, name, value)
if params.get("lakehub_refresh_ahead"):  # what hub_config.kubernetes sets on OIDC sites
    from spawner_hooks.oidc_refresh import refresh_ahead

    c.GenericOAuthenticator.refresh_user_hook = refresh_ahead
c.JupyterHub.services = params["services"]
c.JupyterHub.load_roles = params["roles"]
if params.get("lakehub_site"):  # courses as the site's hub has them (hub_config.course_access)
    from hub_config.course_access import configure
    from sitefile import load_site

    configure(c, load_site(params["lakehub_site"]))
