"""Request headers as services and the gateway see them."""

from daemon.http._request import Headers

RAW = [(b"content-type", b"text/plain"), (b"x-tag", b"a"), (b"x-tag", b"b")]


def test_value_reads_one_header_and_joins_repeats() -> None:
    headers = Headers(RAW)
    assert headers.value(b"content-type") == "text/plain"
    assert headers.value(b"x-tag") == "a, b"
    assert headers.value(b"absent") is None


def test_mapping_is_case_insensitive_and_agrees_with_value() -> None:
    headers = Headers(RAW)
    assert dict(headers) == {"content-type": "text/plain", "x-tag": "a, b"}
    assert headers["Content-Type"] == "text/plain"
    assert "X-TAG" in headers and 1 not in headers
    # Once decoded, value() reads the decoded mapping and gives the same answers.
    assert headers.value(b"x-tag") == "a, b"
    assert headers.value(b"absent") is None
    assert len(headers) == 2
