"""What the HTTP tests run against: services, channels and credentials."""

from __future__ import annotations

import textwrap
from pathlib import Path

BASIC_PASSWORD = "basic-pass-8d1f2c"
API_KEY = "api-key-5e77a0"
ADMIN_TOKEN = "admin-token-0b9c44"

SERVICES = '''
import hashlib
import trio
from daemon import Service


class Echo(Service):
    name = "http.echo"

    async def handle(self):
        http = self.request.http
        self.response.payload = {
            "method": http.method,
            "path": http.path,
            "params": dict(http.params),
            "path_params": dict(http.path_params),
            "payload": self.request.payload,
            "input": dict(self.request.input),
            "size": http.body.size,
            "x_test": http.headers.get("X-Test"),
        }


class Upload(Service):
    """Zato style: sync handle, file name from the query, body from raw_request."""

    name = "http.upload"

    class SimpleIO:
        input_required = ("file_name",)

    def handle(self):
        data = self.request.raw_request
        self.response.payload = {
            "file_name": self.request.http.params.file_name,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }


class Needs(Service):
    name = "http.needs"

    class SimpleIO:
        input_required = ("name", "count")

    async def handle(self):
        self.response.payload = {"name": self.request.input.name}


class Fails(Service):
    name = "http.fails"

    async def handle(self):
        raise RuntimeError("internal detail that must not leak")


class Slow(Service):
    name = "http.slow"

    async def handle(self):
        self.logger.info("slow_started")
        await trio.sleep(float(self.request.http.params.get("seconds", "5")))
        self.response.payload = {"slept": True}


class Text(Service):
    name = "http.text"

    async def handle(self):
        self.response.payload = "created"
        self.response.status_code = 201
        self.response.headers["Location"] = "/api/things/1"


class Save(Service):
    """Streams the body to a file: a rename of the spool file when it was spooled."""

    name = "http.save"

    async def handle(self):
        target = self.request.http.params.target
        self.request.http.body.save_to(target)
        self.response.payload = {"saved": target, "size": self.request.http.body.size}
'''

CONFIG = """
[server]
port = 0
grace_period = "5s"
spool_threshold = "64KiB"

[paths]
services = "services"
state = "state"

[deploy]
step = "5ms"

[admin]
token = "{admin_token}"

[[channels.rest]]
path = "/api/upload"
service = "http.upload"
methods = ["POST"]
max_body = "10MiB"

[[channels.rest]]
path = "/api/echo/{{kind}}/{{id}}"
service = "http.echo"
methods = ["GET", "POST"]

[[channels.rest]]
path = "/api/needs"
service = "http.needs"

[[channels.rest]]
path = "/api/fails"
service = "http.fails"
methods = ["GET"]

[[channels.rest]]
path = "/api/slow"
service = "http.slow"
methods = ["GET"]
timeout = "200ms"

[[channels.rest]]
path = "/api/slow-no-timeout"
service = "http.slow"
methods = ["GET"]

[[channels.rest]]
path = "/api/small"
service = "http.echo"
max_body = "1KiB"

[[channels.rest]]
path = "/api/text"
service = "http.text"
methods = ["GET"]

[[channels.rest]]
path = "/api/save"
service = "http.save"
max_body = "1GiB"

[[channels.rest]]
path = "/api/basic"
service = "http.echo"
methods = ["GET"]
security = {{ type = "basic", username = "alice", password = "env:TEST_BASIC_PASSWORD" }}

[[channels.rest]]
path = "/api/key"
service = "http.echo"
methods = ["GET"]
security = {{ type = "apikey", header = "X-API-Key", key = "file:api.key" }}
"""


def write_config(root: Path, extra: str = "") -> Path:
    (root / "services").mkdir(exist_ok=True)
    (root / "services" / "http_services.py").write_text(textwrap.dedent(SERVICES))
    (root / "api.key").write_text(API_KEY + "\n")
    path = root / "hotwire.toml"
    path.write_text(CONFIG.format(admin_token=ADMIN_TOKEN) + extra)
    return path
