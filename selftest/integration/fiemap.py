"""Which extents of a file share their blocks with another file: FIEMAP.

    exts = fiemap.extents(path)            # syncs first (FIEMAP_FLAG_SYNC)
    fiemap.gaps(exts, 0, size)             # [(start, end)] not in SHARED extents
    fiemap.describe_gaps(missing)          # "[a, b), [c, d) and 2 more"

FS_IOC_FIEMAP on the file as the filesystem sees it (the harness reads the
loop mount directly, not through SMB). Layout (linux/fiemap.h):

    struct fiemap        { u64 fm_start, fm_length; u32 fm_flags,
                           fm_mapped_extents, fm_extent_count, fm_reserved; }
    struct fiemap_extent { u64 fe_logical, fe_physical, fe_length,
                           fe_reserved64[2]; u32 fe_flags, fe_reserved[3]; }
"""

import dataclasses
import fcntl
import struct

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 0x1             # write back dirty pages first (delalloc)
FIEMAP_MAX_OFFSET = (1 << 64) - 1

FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_DELALLOC = 0x4
FIEMAP_EXTENT_UNWRITTEN = 0x800
FIEMAP_EXTENT_SHARED = 0x2000

_HEADER = struct.Struct("=QQIIII")        # 32 bytes
_EXTENT = struct.Struct("=QQQ16xI12x")    # 56 bytes
assert _HEADER.size == 32 and _EXTENT.size == 56

BATCH = 128  # extents per ioctl call


@dataclasses.dataclass(frozen=True)
class Extent:
    logical: int
    physical: int
    length: int
    flags: int

    @property
    def end(self):
        return self.logical + self.length

    @property
    def shared(self):
        return bool(self.flags & FIEMAP_EXTENT_SHARED)


def extents(path, sync=True):
    """Every extent of the file at path, in logical order."""
    out = []
    start = 0
    with open(path, "rb") as f:
        while True:
            buf = bytearray(_HEADER.size + BATCH * _EXTENT.size)
            _HEADER.pack_into(buf, 0, start, FIEMAP_MAX_OFFSET - start,
                              FIEMAP_FLAG_SYNC if sync else 0, 0, BATCH, 0)
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf, True)
            mapped = _HEADER.unpack_from(buf, 0)[3]
            batch = [Extent(*_EXTENT.unpack_from(buf, _HEADER.size + i * _EXTENT.size))
                     for i in range(mapped)]
            out.extend(batch)
            if not batch or batch[-1].flags & FIEMAP_EXTENT_LAST:
                return out
            start = batch[-1].end


def gaps(exts, start, end, wanted=lambda e: e.shared):
    """The parts of [start, end) not covered by extents for which wanted(e)."""
    missing = []
    pos = start
    for e in sorted((e for e in exts if wanted(e)), key=lambda e: e.logical):
        if e.end <= pos:
            continue
        if e.logical >= end:
            break
        if e.logical > pos:
            missing.append((pos, e.logical))
        pos = e.end
        if pos >= end:
            break
    if pos < end:
        missing.append((pos, end))
    return missing


def describe_gaps(missing, limit=3):
    text = ", ".join(f"[{a}, {b})" for a, b in missing[:limit])
    if len(missing) > limit:
        text += f" and {len(missing) - limit} more"
    return text
