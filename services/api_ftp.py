"""The Zato tutorial's FTP-to-Dropbox poller, as written for Zato.

A scheduler job invokes it; it lists the FTP directory, hands every file to
the Dropbox connector by name, and deletes each file from the FTP server only
once the connector succeeded (a failed upload raises, so the file stays and
the next run tries again). Sync `handle`: runs in a worker thread and holds
each file in memory (`getbytes`); for large files use the streaming poller.
"""

from zato.server.service import Service


class FTPChannel(Service):
    """Moves every file of the FTP connection's directory to Dropbox."""

    name = "api.channel.scheduler.upload"

    def handle(self):
        conn = self.outgoing.ftp.get("My FTP Connection")
        moved = 0
        for file_name in conn.listdir("/"):
            data = conn.getbytes("/" + file_name)
            self.invoke("api.connector.dropbox", {"file_name": file_name, "data": data})
            conn.remove("/" + file_name)
            moved += 1
        self.response.payload = {"moved": moved}
