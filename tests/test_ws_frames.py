"""feed.stream.FrameSplitter against frames built by websocket-client's own encoder (RFC 6455 framing)."""
from __future__ import annotations

import random

import pytest
import websocket
from websocket import ABNF

from feed.stream import FrameSplitter


def frame(payload: bytes, opcode: int = ABNF.OPCODE_TEXT, fin: int = 1, mask: bool = False) -> bytes:
    f = ABNF(fin, 0, 0, 0, opcode, 1 if mask else 0, payload)
    if mask:
        f.get_mask_key = lambda n: b"\x01\x02\x03\x04"
    return f.format()


def feed_in_pieces(data: bytes, sizes: list[int]) -> list[tuple[int, bytes]]:
    sp, out, pos = FrameSplitter(), [], 0
    for n in sizes:
        out += sp.feed(data[pos:pos + n])
        pos += n
    out += sp.feed(data[pos:]) if pos < len(data) else []
    return out


PAYLOADS = [b"", b"x", b'{"e":"trade"}', b"a" * 125, b"b" * 126, b"c" * 65535, b"d" * 65536, b"e" * 200_000]


def test_every_length_encoding_whole_and_split_at_every_kind_of_boundary():
    data = b"".join(frame(p) for p in PAYLOADS)
    want = [(ABNF.OPCODE_TEXT, p) for p in PAYLOADS]
    assert FrameSplitter().feed(data) == want
    rng = random.Random(5)
    for _ in range(20):
        cuts = [rng.randint(1, 9) for _ in range(40)] + [rng.randint(1, 70_000) for _ in range(10)]
        assert feed_in_pieces(data, cuts) == want
    assert feed_in_pieces(data, [1] * 300) == want  # byte by byte through the headers


def test_fragments_are_joined_and_control_frames_pass_through_in_order():
    data = (frame(b"he", fin=0) + frame(b"", ABNF.OPCODE_PING) + frame(b"ll", ABNF.OPCODE_CONT, fin=0)
            + frame(b"o", ABNF.OPCODE_CONT) + frame(b"\x03\xe8bye", ABNF.OPCODE_CLOSE))
    assert FrameSplitter().feed(data) == [(ABNF.OPCODE_PING, b""), (ABNF.OPCODE_TEXT, b"hello"),
                                          (ABNF.OPCODE_CLOSE, b"\x03\xe8bye")]


def test_masked_server_frame_is_unmasked():
    assert FrameSplitter().feed(frame(b'{"a":1}', mask=True)) == [(ABNF.OPCODE_TEXT, b'{"a":1}')]


@pytest.mark.parametrize("raw", [bytes([0x80 | 0x3, 0]), bytes([0xC1, 0]), frame(b"x", ABNF.OPCODE_CONT)])
def test_protocol_errors_raise(raw):
    with pytest.raises(websocket.WebSocketProtocolException):
        FrameSplitter().feed(raw)
