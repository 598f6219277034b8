"""The Zato tutorial's REST-to-Dropbox pair, as written for Zato.

A file POSTed to /api/upload?file_name=NAME is handed by name to the Dropbox
connector, which uploads it with the official SDK. Sync `handle`: runs in a
worker thread, reads the whole body (raw_request) into memory, and uploads it
in one request, so it suits files up to Dropbox's 150 MiB single-upload
limit. For larger files use the streaming pair in api_streaming.py.
"""

from safe_names import checked_file_name
from zato.server.service import Service


class DropboxConnector(Service):
    """Receives data to be uploaded to Dropbox."""

    name = "api.connector.dropbox"

    class SimpleIO:
        input_required = ("file_name", "data")

    def handle(self):
        conn = self.cloud.dropbox["My Connection"].conn
        client = conn.client
        client.files_upload(self.request.input.data, "/" + self.request.input.file_name)


class RESTChannel(Service):
    """Receives HTTP uploads and hands them to the Dropbox connector."""

    name = "api.channel.rest.upload"

    class SimpleIO:
        input_required = ("file_name",)

    def handle(self):
        file_name = checked_file_name(self.request.http.params.file_name)
        data = self.request.raw_request
        self.invoke("api.connector.dropbox", {"file_name": file_name, "data": data})
        self.logger.info("uploaded", file_name=file_name, size=len(data))
        self.response.payload = {"file_name": file_name, "size": len(data)}
