"""Sealing: after a commit, an owner's finished segments get a seal (format.py, "Seal"),
so the next mount takes their keys and values without parsing every record.
"""

from __future__ import annotations

from collections.abc import Callable

from appliance.flash.format import build_seal, scan_records
from appliance.flash.limits import SEG
from appliance.flash.segments import Owner

SEALS_PER_COMMIT = 4  # at most this many old segments get their seal after one commit


def seal_behind(
    o: Owner, read: Callable[[int, int], bytes], write: Callable[[int, bytes], None]
) -> None:
    """Seal the owner's finished segments (all but the head) that have no seal yet.

    Runs after a commit, so a power cut here only loses (or tears) a seal: the mount
    then scans that segment record by record, as without seals. The seal is built from
    a fresh scan of the segment on disk, not from memory, so it describes exactly what
    a scan would find (a segment with records from before the last mount included). Not
    flushed: the next commit's flush makes it durable, and a lost seal costs nothing.
    """
    todo = [s for s in o.segs[:-1] if not s.sealed][:SEALS_PER_COMMIT]
    for s in todo:
        s.sealed = True  # sealed now, or no room: either way never try again
        buf = read(s.index * SEG, SEG)
        sc = scan_records(buf, s.owner, s.seq)
        rec = build_seal(buf, sc, s.owner, s.seq)
        if sc.end < s.end or sc.end + len(rec) > SEG:
            continue
        write(s.index * SEG + sc.end, rec)
        s.end = sc.end + len(rec)
