"""The native async pair: uploads of any size, streamed, memory flat.

The channel receives the body into a spool file while it arrives (see
daemon/http/_body.py) and hands the connector the file's path; the connector
uploads it with `conn.upload`, in 8 MiB chunks of an upload session above the
single-request limit. Use these for large files, or whenever the service need
not hold the data itself; use the Zato-style pair for Zato compatibility.
"""

from safe_names import checked_file_name

from daemon import Service


class StreamingDropboxConnector(Service):
    """Uploads a local file (`path`) or bytes (`data`) to Dropbox as `file_name`."""

    name = "api.connector.dropbox.stream"

    class SimpleIO:
        input_required = ("file_name",)
        input_optional = ("path", "data", "mode")
        output_required = ("path", "size")

    async def handle(self):
        conn = self.cloud.dropbox["My Connection"]
        source = self.request.input.path or self.request.input.data or b""
        metadata = await conn.upload(
            self.request.input.file_name, source, mode=self.request.input.mode or "overwrite"
        )
        self.response.payload = {"path": metadata.path_display, "size": metadata.size}


class StreamingRESTChannel(Service):
    """POST /api/upload/stream?file_name=NAME: any size, streamed to Dropbox."""

    name = "api.channel.rest.upload.stream"

    class SimpleIO:
        input_required = ("file_name",)

    async def handle(self):
        file_name = checked_file_name(self.request.http.params.file_name)
        body = self.request.http.body
        uploaded = await self.invoke(
            "api.connector.dropbox.stream",
            {
                "file_name": file_name,
                "path": str(body.path) if body.path else None,
                "data": None if body.path else body.read(),
            },
        )
        self.logger.info("uploaded", file_name=file_name, size=body.size)
        self.response.payload = uploaded
