"""Random operation sequences against a plain dict model, with power cuts in between."""

from __future__ import annotations

from collections import Counter

from flashdev import MODES, CutDevice, PowerCut, formatted_image, memdev, mount, state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.flash import FlashFullError
from appliance.flash.format import record_size

KEYS = [f"key{i}" for i in range(6)]
IDS = list(range(1, 9))

value = st.binary(max_size=3000) | st.builds(
    lambda n, b: bytes([b]) * n, st.integers(0, 20000), st.integers(0, 255)
)
vars_op = st.tuples(
    st.just("vars"),
    st.dictionaries(st.sampled_from(KEYS), st.none() | value, min_size=1, max_size=4),
)
attrs = st.builds(lambda n, c: f"(cn=u)(x={c * n})", st.integers(0, 9000), st.sampled_from("abc"))
fdir_op = st.tuples(st.sampled_from(["put", "del"]), st.sampled_from(IDS), attrs)
reset_op = st.tuples(st.sampled_from(["reset-vars", "reset-ldap"]))
op = st.one_of(vars_op, vars_op, fdir_op, fdir_op, fdir_op, reset_op)
cut = st.none() | st.tuples(st.integers(0, 6), st.sampled_from(MODES), st.integers(0, 99))

Model = tuple[dict[str, bytes], dict[int, str]]


def apply(flash, model: Model, o: tuple) -> Model:  # type: ignore[no-untyped-def]
    v, d = dict(model[0]), dict(model[1])
    try:
        if o[0] == "vars":
            flash.vars.commit(o[1])
            for k, val in o[1].items():
                if val is None:
                    v.pop(k, None)
                else:
                    v[k] = val
        elif o[0] == "put":
            flash.flashdir.put(o[1], o[2])
            d[o[1]] = o[2]
        elif o[0] == "del":
            flash.flashdir.delete(o[1])
            d.pop(o[1], None)
        elif o[0] == "reset-vars":
            flash.vars.reset()
            v = {}
        else:
            flash.flashdir.reset()
            d = {}
    except FlashFullError:
        return model  # refused: nothing changed
    return v, d


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(op, cut), min_size=1, max_size=25))
def test_random_ops_with_cuts(steps: list[tuple[tuple, object]]) -> None:
    image = formatted_image(16)
    model: Model = ({}, {})
    flash = mount(memdev(image))
    for o, c in steps:
        if c is None:
            model = apply(flash, model, o)
            continue
        n, mode, seed = c  # type: ignore[misc]
        # replay this one op on a cutting copy of the current disk
        image = bytes(flash.flashman.dev.data)
        dev = CutDevice(image, n, mode, seed)
        f2 = mount(dev)
        try:
            new = apply(f2, model, o)
        except PowerCut:
            after = mount(dev.survivor())
            got = state(after)
            new = apply(mount(memdev(image)), model, o)
            assert got in (model, new)
            model = got
            flash = after
            continue
        model = new
        flash = mount(memdev(bytes(dev.durable)))
        assert state(flash) == model
    assert state(flash) == model
    check_invariants(flash)
    again = mount(memdev(bytes(flash.flashman.dev.data)))
    assert state(again) == model
    check_invariants(again)


def check_invariants(flash) -> None:  # type: ignore[no-untyped-def]
    """The allocator's bookkeeping matches a recount from scratch."""
    fm = flash.flashman
    owned = [s for o in fm.owners.values() for s in o.segs]
    free = {i for _ec, i in fm._free}
    assert len(free) == len(fm._free)
    assert free.isdisjoint(s.index for s in owned)
    assert len(free) + len(owned) == len(fm.segments)
    for o in fm.owners.values():
        assert o.live == sum(record_size(len(k), len(v)) for k, v in o.values.items())
        counts = Counter(o.loc.values())
        assert all(s.nlive == counts.get(s, 0) for s in o.segs)
        assert set(o.loc) == set(o.values)
