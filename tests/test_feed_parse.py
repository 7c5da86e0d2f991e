"""Frame and REST parsing against the sample frames of ../shared/binance-protocol.md."""
import pytest

from feed.binance import MARKETS, MalformedFrame, Trade, parse_frame, parse_rest_trades, stream_url, to_us

SPOT_TRADE = ('{"stream":"btcusdt@trade","data":{"e":"trade","E":1735689600012,"s":"BTCUSDT","t":4370000001,'
              '"p":"93576.01000000","q":"0.00150000","T":1735689600011,"m":true,"M":true}}')
USDM_AGG = ('{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1717113600135,"s":"BTCUSDT","a":2228503268,'
            '"p":"68402.60","q":"0.024","nq":"0.024","f":5053880937,"l":5053880937,"T":1717113600031,"m":false}}')
SPOT_AGG_RAW = ('{"e":"aggTrade","E":1735689600012,"s":"BTCUSDT","a":3330000001,"p":"93576.01000000",'
                '"q":"0.00150000","f":4370000001,"l":4370000002,"T":1735689600011,"m":true,"M":true}')


def test_spot_trade_frame():
    t = parse_frame(SPOT_TRADE, "spot", recv_us=5)
    assert t == Trade("spot", "BTCUSDT", 4370000001, 1735689600011000, 93576.01, 0.0015, True, 5, "ws")
    assert type(t.price) is float and type(t.trade_id) is int


def test_usdm_agg_trade_frame_keyed_by_agg_id():
    t = parse_frame(USDM_AGG.encode(), "usdm")
    assert (t.symbol, t.trade_id, t.ts_us, t.price, t.qty, t.is_buyer_maker) == \
        ("BTCUSDT", 2228503268, 1717113600031000, 68402.6, 0.024, False)


def test_raw_stream_frame_and_unknown_keys():
    t = parse_frame(SPOT_AGG_RAW.replace('"M":true', '"M":true,"zz":[1,2]'), "spot")
    assert t.trade_id == 3330000001


def test_microsecond_times_are_kept():
    frame = SPOT_TRADE.replace("1735689600011", "1735689600011123")
    assert parse_frame(frame, "spot").ts_us == 1735689600011123
    assert to_us(1735689600011) == 1735689600011000 and to_us(1735689600011123) == 1735689600011123


def test_control_and_shutdown_messages():
    assert parse_frame('{"result":null,"id":1}', "spot") == {"result": None, "id": 1}
    ev = parse_frame('{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1770123456789}}', "spot")
    assert ev["e"] == "serverShutdown"


@pytest.mark.parametrize("frame, words", [
    ("not json", "not JSON"),
    ("[1,2]", "JSON object"),
    ('{"data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"1","m":true}}', "misses field 'T'"),
    ('{"data":{"e":"trade","s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}}', "non-numeric"),
    ('{"data":{"e":"trade","s":"BTCUSDT","t":"1","p":"1","q":"1","T":1,"m":true}}', "bad field types"),
    ('{"data":{"e":"trade","s":"BTCUSDT","t":1,"p":"-5","q":"1","T":1,"m":true}}', "out of range"),
])
def test_malformed_frames_raise_clear_errors(frame, words):
    with pytest.raises(MalformedFrame, match=words):
        parse_frame(frame, "spot")


def test_rest_rows_both_shapes():
    hist = [{"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012",
             "time": 1499865549590, "isBuyerMaker": True, "isBestMatch": True}]
    agg = [{"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27781, "T": 1498793709153,
            "m": True, "M": True}]
    (a,) = parse_rest_trades(hist, "spot", "BTCUSDT")
    (b,) = parse_rest_trades(agg, "usdm", "BTCUSDT")
    assert a == Trade("spot", "BTCUSDT", 28457, 1499865549590000, 4.000001, 12.0, True, None, "rest")
    assert b == Trade("usdm", "BTCUSDT", 26129, 1498793709153000, 0.01633102, 4.70443515, True, None, "rest")
    with pytest.raises(MalformedFrame):
        parse_rest_trades([{"id": 1}], "spot", "X")


def test_stream_urls():
    assert stream_url(MARKETS["spot"], ["BTCUSDT", "ETHUSDT"]) == \
        "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade"
    assert stream_url(MARKETS["usdm"], ["BTCUSDT"], "ws://127.0.0.1:9001/") == \
        "ws://127.0.0.1:9001/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice@1s"
