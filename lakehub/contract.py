"""lakehub's vocabulary: every name that crosses a process or machine boundary.

The hub, its services, the spawn hooks, the sessions (in the single-user image), the
chart and the renderers all meet on these names: files in a home, environment variables,
mount paths in pods, JupyterHub service names and scopes, Kubernetes object names,
labels and Secret keys, URL paths of the services.  Each is defined here once and
imported everywhere else; ``hub_config.values`` renders the ones the chart needs into
its values, so the templates never spell them either (``tests/test_contract.py``).

Layer 0: the standard library only, so the session package (``lakehub``) and every
hub-side package may import it.
"""

from __future__ import annotations

import hashlib

# --- hub services (JupyterHub services and how a token may call them) ---------------------

ISSUER_SERVICE = "lakehub-issuer"  # the token service (hub_services.issuer)
CACHE_SERVICE = "lakehub-cache"  # the shared dataset cache (hub_services.cache.app)
COURSES_SERVICE = "lakehub-courses"  # `make course-status` on clusters (courses.cluster)
WARM_SERVICE = "lakehub-warm"  # the cache warm-up job on clusters
ADMIN_SERVICE = "lakehub-admin"  # the local stack's own admin token (make up, tests)
DASK_SERVICE = "dask-gateway"  # Dask Gateway (z2jh and the dask-gateway chart use this)


# --- courses as JupyterHub groups (courses.membership) -------------------------------------

COURSE_GROUP_PREFIX = "course-"  # course-<name>: the course's students
INSTRUCTORS_GROUP_SUFFIX = "-instructors"  # course-<name>-instructors: its instructors
IDP_GROUP_PREFIX = "group:"  # a course member given as an identity provider's group


# a student shares their running server with a course's instructors through the hub's
# own API (spawner_hooks.course_share): POST {hub API}/lakehub/shares/<user> {"course": ...}
COURSE_SHARE_SCOPE = "custom:lakehub:course-share"  # given as !user to users and sessions
COURSE_SHARE_API = "lakehub/shares"  # under the hub's API URL (/hub/api/)
# a course's sessions (server hours, CPU time, peak memory) from the hub's sessions record,
# for its instructors and hub admins (spawner_hooks.course_usage): GET {hub API}/lakehub/usage
COURSE_USAGE_API = "lakehub/usage"  # under the hub's API URL (/hub/api/); ?course=<name>


def course_group(course: str) -> str:
    """The JupyterHub group of a course's students."""
    return f"{COURSE_GROUP_PREFIX}{course}"


def instructors_group(course: str) -> str:
    """The JupyterHub group of a course's instructors."""
    return f"{COURSE_GROUP_PREFIX}{course}{INSTRUCTORS_GROUP_SUFFIX}"


# a course's shared folder in a member's home (spawner_hooks.course_folders locally,
# spawner_hooks.kube_courses on clusters), and its handouts inside it
HANDOUTS_FOLDER = "handouts"  # writable by the course's instructors, read-only to students
# locally, a course's members (lhc-<name>) and its instructors (lhc-<name>-instructors) are
# system groups too
LOCAL_COURSE_GROUP_PREFIX = "lhc-"


def course_shared_folder(course: str) -> str:
    """The folder of a course's members in each member's home: ``course-<name>-shared``."""
    return f"{COURSE_GROUP_PREFIX}{course}-shared"


def access_scope(service: str) -> str:
    """The JupyterHub scope that lets a token call ``service``."""
    return f"access:services!service={service}"


def service_prefix(service: str) -> str:
    """Where the hub's proxy routes a service: ``/services/<name>``."""
    return f"/services/{service}"


# ports inside a cluster (the Services of the chart) and locally by default
ISSUER_PORT = 8009
CACHE_PORT = 8012

# URL paths
TOKEN_API_PATH = "/api/token"  # noqa: S105  (the token service's renewal endpoint)
COURSE_REPORT_PATH = "lakehub/courses"  # under a single-user server's base URL
CACHE_USAGE_PATH = "api/usage"  # the cache service's bytes served per user and dataset

# where the token service's Rucio tokens come from
HUB_ISSUER = "hub_issuer"
TOKEN_EXCHANGE = "token_exchange"  # noqa: S105  (a source's name)

# --- a session's files ---------------------------------------------------------------------

SESSION_DIR = ".lakehub"  # locally: ~/.lakehub (0700), the session's private folder
TOKEN_FILE = "rucio-token"  # noqa: S105  (the token's file name, also its Secret key)
RUCIO_CFG_FILE = "rucio.cfg"
JUPYTER_CONFIG_DIR = "jupyter"
JUPYTER_SERVER_CONFIG_FILE = "jupyter_server_config.json"
STATUS_FILE = "status.json"
RUCIO_JUPYTERLAB_DIR = "rucio-jupyterlab"
# notes a student finds in their home
NOTICE_FILE = "LAKEHUB-NOTICE.md"  # what the spawn could not set up
COURSES_NOTICE_FILE = "LAKEHUB-COURSES.md"  # a course that could not be pulled
TOKEN_NOTICE_FILE = "LAKEHUB-TOKEN-NOTICE.md"  # noqa: S105  (a renewal that keeps failing)
# the hub's record of who pulled which course revision (local stack)
REVISIONS_FILE = "revisions.json"
# the hub's append-only record of servers' starts, stops and CPU/memory: locally in the
# state folder, on clusters on the hub's own volume (HUB_USAGE_DIR)
SESSIONS_FILE = "sessions.jsonl"

# --- environment variables -----------------------------------------------------------------

# standard names the Rucio clients read
BEARER_TOKEN_FILE = "BEARER_TOKEN_FILE"  # noqa: S105  (WLCG bearer-token discovery)
RUCIO_CONFIG = "RUCIO_CONFIG"
# a session's
ENV_SESSION_DIR = "LAKEHUB_SESSION_DIR"
ENV_CACHE_URL = "LAKEHUB_CACHE_URL"  # the cache service; unset: no shared cache
ENV_TOKEN_URL = "LAKEHUB_TOKEN_URL"  # noqa: S105  (where the refresher renews)
ENV_TOKEN_SEED = "LAKEHUB_TOKEN_SEED"  # noqa: S105  (the read-only copy in a pod's Secret)
ENV_COURSES = "LAKEHUB_COURSES"  # the courses of this home, JSON
# the hub's on Kubernetes (hub.extraEnv, read by hub_config.kubernetes)
ENV_SITE = "LAKEHUB_SITE"
ENV_TOKEN_SOURCE = "LAKEHUB_TOKEN_SOURCE"  # noqa: S105  (hub_issuer | token_exchange)
ENV_SESSION_MOUNT = "LAKEHUB_SESSION_MOUNT"
ENV_SESSION_HOME = "LAKEHUB_SESSION_HOME"
ENV_CACHE_MOUNT = "LAKEHUB_CACHE_MOUNT"
ENV_CACHE_PFN_PREFIX = "LAKEHUB_CACHE_PFN_PREFIX"
ENV_DASK_API_URL = "LAKEHUB_DASK_API_URL"
ENV_EXCHANGE_AUDIENCE = "LAKEHUB_EXCHANGE_AUDIENCE"
ENV_EXCHANGE_SCOPE = "LAKEHUB_EXCHANGE_SCOPE"
ENV_EXCHANGE_TOKEN_URL = "LAKEHUB_EXCHANGE_TOKEN_URL"  # noqa: S105  (a variable's name)
ENV_EXCHANGE_CA_CERT = "LAKEHUB_EXCHANGE_CA_CERT"
ENV_ISSUER_URL = "LAKEHUB_ISSUER_URL"
ENV_ISSUER_KEY_FILE = "LAKEHUB_ISSUER_KEY_FILE"
ENV_RUCIO_ADMIN_USERNAME = "LAKEHUB_RUCIO_ADMIN_USERNAME"
ENV_RUCIO_ADMIN_PASSWORD_FILE = "LAKEHUB_RUCIO_ADMIN_PASSWORD_FILE"  # noqa: S105
ENV_OAUTH_CLIENT_SECRET = "OAUTH_CLIENT_SECRET"  # noqa: S105  (GenericOAuthenticator's own)
# the local stack's processes
ENV_HOME = "LAKEHUB_HOME"
ENV_STATE = "LAKEHUB_STATE"
ENV_HOOKS = "LAKEHUB_HOOKS"
ENV_MOCK_SERVERS = "LAKEHUB_MOCK_SERVERS"
ENV_SERVER_CMD = "LAKEHUB_SERVER_CMD"  # JSON argv servers run instead (benchmarks' light ones)
ENV_SINGLEUSER_ENV = "LAKEHUB_SINGLEUSER_ENV"  # the environment servers run from (analysis)
# the Dask Gateway's (local config file; gateway pods on Kubernetes)
ENV_DASK_CONFIG = "LAKEHUB_DASK_CONFIG"
ENV_DASK_MAX_WORKERS = "LAKEHUB_DASK_MAX_WORKERS"
ENV_DASK_IDLE_TIMEOUT = "LAKEHUB_DASK_IDLE_TIMEOUT"
ENV_DASK_CACHE_CLAIM = "LAKEHUB_DASK_CACHE_CLAIM"
ENV_DASK_CACHE_MOUNT = "LAKEHUB_DASK_CACHE_MOUNT"
ENV_DASK_TOKEN_DIR = "LAKEHUB_DASK_TOKEN_DIR"  # noqa: S105  (a variable's name)

# --- paths in pods -------------------------------------------------------------------------

POD_HOME = "/home/jovyan"  # z2jh's home in user pods
SESSION_MOUNT = "/var/run/lakehub"  # the session Secret, read-only
TOKEN_MOUNT = "/var/run/lakehub-token"  # noqa: S105  (the live token: an in-memory emptyDir)
CACHE_MOUNT = "/srv/lakehub/cache"  # the shared cache (read-only but for the cache service)
CONFIG_DIR = "/etc/lakehub"  # lakehub's files in the hub and service pods
SITE_FILE = "site.yaml"
SITE_MOUNT = f"{CONFIG_DIR}/{SITE_FILE}"
SECRETS_DIR = f"{CONFIG_DIR}/secrets"
RUCIO_ADMIN_DIR = f"{SECRETS_DIR}/rucio-admin"
ISSUER_KEY_DIR = f"{SECRETS_DIR}/issuer"
CACHE_CONFIG_DIR = f"{CONFIG_DIR}/cache"
COURSE_CONFIG_DIR = f"{CONFIG_DIR}/course"
CACHE_STATE_DIR = "/var/lib/lakehub-cache"
# the sessions record in the hub pod: on the hub's volume (hub-db-dir), which z2jh mounts
# at /srv/jupyterhub
HUB_USAGE_DIR = "/srv/jupyterhub/lakehub-usage"

# --- Kubernetes objects, labels and Secret keys ---------------------------------------------

SITE_CONFIGMAP = "lakehub-site"
CACHE_CLAIM = "lakehub-cache"  # the shared cache's PersistentVolumeClaim
CACHE_VOLUME = "lakehub-cache"  # its volume in user and worker pods
SESSION_VOLUME = "lakehub-session"
COURSES_VOLUME = "lakehub-course-volume"  # the courses' shared volume in members' pods
TOKEN_VOLUME = "lakehub-token"  # noqa: S105  (a volume's name)
HUB_SECRET = "hub"  # noqa: S105  (z2jh's own Secret: hub.services.<name>.apiToken)
HUB_SERVICE_ACCOUNT = "hub"  # z2jh's hub ServiceAccount (the usage ClusterRole's subject)
USAGE_CLUSTER_ROLE = "lakehub-usage"  # <namespace>-lakehub-usage: read the kubelets' stats
SESSION_SECRET_SUFFIX = "-lakehub"  # noqa: S105  (<pod name>-lakehub: a server's Secret)
USER_TOKEN_SECRET_PREFIX = "lakehub-rucio-token-"  # noqa: S105  (the user's workers' token)
PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "lakehub"
USER_LABEL = "lakehub/user"  # a hash of the user name (user_label)
POD_LABEL = "lakehub/pod"
TOKEN_EXPIRES_ANNOTATION = "lakehub/token-expires"  # noqa: S105  (an annotation's name)
API_TOKEN_KEY = "jupyterhub-api-token"  # noqa: S105  (a Secret key)
RUCIO_ADMIN_KEY = "password"  # noqa: S105  (a Secret key)
ISSUER_KEY_KEY = "issuer-key.json"
OIDC_CLIENT_SECRET_KEY = "client-secret"  # noqa: S105  (a Secret key)
CRYPT_KEY_KEY = "hub.config.CryptKeeper.keys"  # the key z2jh reads from existingSecret


def hub_service_token_key(service: str) -> str:
    """Where z2jh keeps a hub service's API token in its Secret ``hub``."""
    return f"hub.services.{service}.apiToken"


def session_secret_name(pod_name: str) -> str:
    """A server's Secret; pod names are DNS labels, so this is a valid name too."""
    return f"{pod_name}{SESSION_SECRET_SUFFIX}"


def user_label(username: str) -> str:
    """A label value naming a user whatever characters the name has (label values allow
    63 of ``[A-Za-z0-9_.-]``): the first 40 hex digits of its SHA-256."""
    return hashlib.sha256(username.encode()).hexdigest()[:40]
