"""A service to try the daemon with: ``hotwire invoke demo.echo --payload '{"text": "hi"}'``."""

from daemon import Service


class Echo(Service):
    """Answers with what it was given, and who answered."""

    name = "demo.echo"

    class SimpleIO:
        input_required = ("text",)
        output_required = ("text",)

    async def handle(self):
        self.logger.info("echoing", length=len(self.request.input.text))
        self.response.payload = {"text": self.request.input.text, "cid": self.cid}
