"""File-name rules shared by the upload channels (a helper module: `import safe_names`)."""

from daemon import InvalidInput

MAX_NAME_BYTES = 255


def checked_file_name(name):
    """Return ``name`` without outer "/" if it is safe as a Dropbox path below the root, else raise.

    The "/" are stripped before the checks, so that "/" alone is refused as
    empty rather than naming the root. InvalidInput becomes a 400 at a REST
    channel, with this message.
    """
    name = (name or "").strip("/")
    if not name.strip():
        raise InvalidInput("file_name must not be empty")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise InvalidInput(f"file_name must be at most {MAX_NAME_BYTES} bytes in UTF-8")
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise InvalidInput("file_name must not contain control characters")
    if any(part in ("..", ".") for part in name.replace("\\", "/").split("/")):
        raise InvalidInput("file_name must not contain '.' or '..' path segments")
    return name
