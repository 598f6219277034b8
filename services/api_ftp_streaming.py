"""The native async FTP poller: streams, takes only finished files, never loses one.

Each run lists the directory with sizes and modification times in one round
trip and takes only the files that look the same as at the previous run — a
file still being written is left for the next run. Small files are read into
memory; larger ones are streamed through a temporary file, so memory stays
flat. A file is removed from the FTP server only after Dropbox confirmed its
upload (`overwrite`, so a file re-sent after a lost removal is an identical
overwrite, never a duplicate). Files move several at a time.
"""

import tempfile
from pathlib import Path

import trio

from daemon import Service

IN_MEMORY_LIMIT = 1024 * 1024
PARALLEL = 8


class StreamingFTPChannel(Service):
    name = "api.channel.scheduler.upload.stream"
    concurrency = 1  # one run at a time: runs share what the previous listing saw

    class SimpleIO:
        input_optional = ("directory", "connection", "settle")

    #: name -> (size, mtime) at the previous run. Class state: it lives as long as
    #: this version of the service, and a redeploy costs one run of waiting.
    previous: dict = {}

    async def handle(self):
        directory = self.request.input.directory or "/"
        ftp = self.outgoing.ftp[self.request.input.connection or "My FTP Connection"]
        listing = await ftp.alistdir_info(directory)
        files = {name: (info.size, info.mtime) for name, info in listing.items() if not info.is_dir}
        settle = self.request.input.settle is not False
        ready = [
            name for name, seen in files.items() if not settle or self.previous.get(name) == seen
        ]
        moved, failed = [], []

        async def move(name, limiter):
            async with limiter:
                try:
                    await self._move(ftp, f"{directory.rstrip('/')}/{name}", name, files[name][0])
                    moved.append(name)
                except Exception as exc:  # one file's failure must not stop the others
                    self.logger.warning("ftp_file_not_moved", file=name, error=str(exc))
                    failed.append(name)

        limiter = trio.CapacityLimiter(PARALLEL)
        async with trio.open_nursery() as nursery:
            for name in ready:
                nursery.start_soon(move, name, limiter)
        # Failed and unsettled files are looked at again next run; moved ones are gone.
        type(self).previous = {name: seen for name, seen in files.items() if name not in moved}
        self.logger.info(
            "ftp_poll_done", moved=len(moved), failed=len(failed), waiting=len(files) - len(ready)
        )
        self.response.payload = {
            "moved": len(moved),
            "failed": len(failed),
            "waiting": len(files) - len(ready),
        }

    async def _move(self, ftp, remote_path, name, size):
        dropbox = self.cloud.dropbox["My Connection"]
        if size <= IN_MEMORY_LIMIT:
            await dropbox.upload(name, await ftp.agetbytes(remote_path), mode="overwrite")
        else:
            with tempfile.TemporaryDirectory(prefix="hotwire-ftp-") as folder:
                local = Path(folder) / "file"
                await ftp.adownload(remote_path, local)
                await dropbox.upload(name, local, mode="overwrite")
        await ftp.aremove(remote_path)
