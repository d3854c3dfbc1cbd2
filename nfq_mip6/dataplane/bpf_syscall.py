"""The few ``bpf(2)`` commands the route-optimization data path needs, through ctypes.

No bpftool and no libbpf at run time for map work: one system call per lookup, update or
delete (about 160k updates/s from Python with pre-packed keys), plus the object-ID commands
that let a restarted agent find the maps of programs it attached before (a tc filter keeps
its program, the program keeps its maps, even after a ``kill -9`` of the agent).

The ``union bpf_attr`` layouts and command numbers are the kernel's UAPI (``linux/bpf.h``).
Every failure raises :class:`BpfError` with the command and the errno.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from nfq_mip6.errors import DataplaneError

__all__ = [
    "BpfError",
    "BpfMap",
    "MapInfo",
    "ProgramInfo",
    "map_fd_by_id",
    "map_info",
    "possible_cpus",
    "prog_fd_by_id",
    "prog_info",
    "prog_test_run",
]

BPF_MAP_LOOKUP_ELEM: Final = 1
BPF_MAP_UPDATE_ELEM: Final = 2
BPF_MAP_DELETE_ELEM: Final = 3
BPF_MAP_GET_NEXT_KEY: Final = 4
BPF_OBJ_PIN: Final = 6
BPF_OBJ_GET: Final = 7
BPF_PROG_TEST_RUN: Final = 10
BPF_PROG_GET_FD_BY_ID: Final = 13
BPF_MAP_GET_FD_BY_ID: Final = 14
BPF_OBJ_GET_INFO_BY_FD: Final = 15
BPF_ANY: Final = 0

_SYSCALL_NUMBERS: Final = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361}
_ELEM_ATTR: Final = struct.Struct("=IIQQQ")  # map_fd, pad, key, value/next_key, flags
_ID_ATTR: Final = struct.Struct("=III")  # id, next_id, open_flags
_INFO_ATTR: Final = struct.Struct("=IIQ")  # bpf_fd, info_len, info
_PIN_ATTR: Final = struct.Struct("=QII")  # pathname, bpf_fd, file_flags
# prog_fd, retval, data_size_in, data_size_out, data_in, data_out, repeat, duration,
# ctx_size_in, ctx_size_out, ctx_in, ctx_out, flags, cpu, batch_size
_TEST_RUN_ATTR: Final = struct.Struct("=IIIIQQIIIIQQIII")
_PROG_INFO_SIZE: Final = 80  # up to and including name[16]
_MAP_INFO_SIZE: Final = 40  # up to and including name[16]

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long]
_syscall = _libc.syscall


class BpfError(OSError, DataplaneError):
    """A ``bpf(2)`` command failed; ``errno`` is set, the message names the command (the
    kernel branch of the error root; ``OSError`` first so ``errno`` is filled in)."""


_SYSCALL_NUMBER: Final = _SYSCALL_NUMBERS.get(platform.machine(), -1)


def _bpf(command: int, attr: ctypes.Array[ctypes.c_char], what: str) -> int:
    if _SYSCALL_NUMBER < 0:
        raise BpfError(errno.ENOSYS, f"bpf(2): unknown system call number on {platform.machine()}")
    result: int = _syscall(_SYSCALL_NUMBER, command, attr, len(attr))
    if result < 0:
        code = ctypes.get_errno()
        raise BpfError(code, f"bpf({what}): {os.strerror(code)}")
    return result


@functools.cache
def possible_cpus() -> int:
    """How many values a per-CPU map returns (``/sys/devices/system/cpu/possible``)."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


@dataclass(frozen=True, slots=True)
class ProgramInfo:
    """What ``BPF_OBJ_GET_INFO_BY_FD`` tells about a program (the fields we use)."""

    id: int
    name: str
    tag: bytes
    map_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MapInfo:
    """What ``BPF_OBJ_GET_INFO_BY_FD`` tells about a map (the fields we use)."""

    id: int
    name: str
    key_size: int
    value_size: int
    max_entries: int


def _object_info(fd: int, size: int, prefill: bytes = b"") -> bytes:
    info = ctypes.create_string_buffer(prefill.ljust(size, b"\0"), size)
    attr = ctypes.create_string_buffer(_INFO_ATTR.pack(fd, size, ctypes.addressof(info)))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "OBJ_GET_INFO_BY_FD")
    return info.raw


def prog_info(fd: int) -> ProgramInfo:
    """The program's ID, name, tag and the IDs of the maps it uses."""
    first = _object_info(fd, _PROG_INFO_SIZE)
    (nr_map_ids,) = struct.unpack_from("=I", first, 52)
    ids = (ctypes.c_uint32 * max(nr_map_ids, 1))()
    prefill = bytearray(_PROG_INFO_SIZE)
    struct.pack_into("=IQ", prefill, 52, nr_map_ids, ctypes.addressof(ids))
    raw = _object_info(fd, _PROG_INFO_SIZE, bytes(prefill))
    (prog_id,) = struct.unpack_from("=I", raw, 4)
    name = raw[64:80].split(b"\0", 1)[0].decode("ascii", "replace")
    return ProgramInfo(prog_id, name, raw[8:16], tuple(ids[:nr_map_ids]))


def map_info(fd: int) -> MapInfo:
    raw = _object_info(fd, _MAP_INFO_SIZE)
    _type, map_id, key_size, value_size, max_entries, _flags = struct.unpack_from("=6I", raw)
    name = raw[24:40].split(b"\0", 1)[0].decode("ascii", "replace")
    return MapInfo(map_id, name, key_size, value_size, max_entries)


def _fd_by_id(command: int, object_id: int, what: str) -> int:
    attr = ctypes.create_string_buffer(_ID_ATTR.pack(object_id, 0, 0))
    return _bpf(command, attr, what)


def prog_fd_by_id(prog_id: int) -> int:
    """A new file descriptor for the program with this ID (the caller closes it)."""
    return _fd_by_id(BPF_PROG_GET_FD_BY_ID, prog_id, "PROG_GET_FD_BY_ID")


def map_fd_by_id(map_id: int) -> int:
    """A new file descriptor for the map with this ID (the caller closes it)."""
    return _fd_by_id(BPF_MAP_GET_FD_BY_ID, map_id, "MAP_GET_FD_BY_ID")


def prog_test_run(prog_fd: int, packet: bytes, *, room: int = 256) -> tuple[int, bytes]:
    """Run a tc program once on ``packet`` (``BPF_PROG_TEST_RUN``): (return code, packet out)."""
    data_in = ctypes.create_string_buffer(packet, len(packet))
    data_out = ctypes.create_string_buffer(len(packet) + room)
    attr = ctypes.create_string_buffer(
        _TEST_RUN_ATTR.pack(
            prog_fd,
            0,
            len(packet),
            len(data_out),
            ctypes.addressof(data_in),
            ctypes.addressof(data_out),
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        )
    )
    _bpf(BPF_PROG_TEST_RUN, attr, "PROG_TEST_RUN")
    _fd, retval, _in, size_out = struct.unpack_from("=IIII", attr.raw)
    return ctypes.c_int32(retval).value, data_out.raw[:size_out]


class BpfMap:
    """A map file descriptor with lookup / update / delete / iteration (owns the fd)."""

    def __init__(self, fd: int, *, per_cpu: bool = False) -> None:
        self.fd = fd
        info = map_info(fd)
        self.id = info.id
        self.name = info.name
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self._value_room = (
            ((info.value_size + 7) // 8 * 8) * possible_cpus() if per_cpu else info.value_size
        )
        self._key = ctypes.create_string_buffer(self.key_size)
        self._next = ctypes.create_string_buffer(self.key_size)
        self._value = ctypes.create_string_buffer(self._value_room)
        self._attr = ctypes.create_string_buffer(_ELEM_ATTR.size)
        self._update_attr = ctypes.create_string_buffer(
            _ELEM_ATTR.pack(
                fd, 0, ctypes.addressof(self._key), ctypes.addressof(self._value), BPF_ANY
            ),
            _ELEM_ATTR.size,
        )

    @classmethod
    def by_id(cls, map_id: int, *, per_cpu: bool = False) -> BpfMap:
        return cls(map_fd_by_id(map_id), per_cpu=per_cpu)

    @classmethod
    def pinned(cls, path: str, *, per_cpu: bool = False) -> BpfMap:
        name = ctypes.create_string_buffer(path.encode())
        attr = ctypes.create_string_buffer(_PIN_ATTR.pack(ctypes.addressof(name), 0, 0))
        return cls(_bpf(BPF_OBJ_GET, attr, f"OBJ_GET {path}"), per_cpu=per_cpu)

    def pin(self, path: str) -> None:
        name = ctypes.create_string_buffer(path.encode())
        attr = ctypes.create_string_buffer(_PIN_ATTR.pack(ctypes.addressof(name), self.fd, 0))
        _bpf(BPF_OBJ_PIN, attr, f"OBJ_PIN {path}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _check_key(self, key: bytes) -> None:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key of {len(key)} octets, needs {self.key_size}")

    def update(self, key: bytes, value: bytes) -> None:
        """Insert or replace (``BPF_ANY``): a reader sees the old or the new value, whole."""
        if len(key) != self.key_size or len(value) != self.value_size:
            raise ValueError(f"map {self.name}: key or value of the wrong size")
        ctypes.memmove(self._key, key, self.key_size)
        ctypes.memmove(self._value, value, self.value_size)
        _bpf(BPF_MAP_UPDATE_ELEM, self._update_attr, "MAP_UPDATE_ELEM")

    def lookup(self, key: bytes) -> bytes | None:
        """The value (all CPUs' values one after another for a per-CPU map), or None."""
        self._check_key(key)
        self._key.raw = key
        struct.pack_into(
            "=IIQQQ",
            self._attr,
            0,
            self.fd,
            0,
            ctypes.addressof(self._key),
            ctypes.addressof(self._value),
            0,
        )
        try:
            _bpf(BPF_MAP_LOOKUP_ELEM, self._attr, f"MAP_LOOKUP_ELEM {self.name}")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return self._value.raw

    def delete(self, key: bytes) -> bool:
        """Remove ``key``; False when it was not there. (The attr after ``key`` must be
        zero: the kernel rejects a delete that still carries a value pointer.)"""
        self._check_key(key)
        self._key.raw = key
        attr = ctypes.create_string_buffer(
            _ELEM_ATTR.pack(self.fd, 0, ctypes.addressof(self._key), 0, 0)
        )
        try:
            _bpf(BPF_MAP_DELETE_ELEM, attr, f"MAP_DELETE_ELEM {self.name}")
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self) -> Iterator[bytes]:
        """All keys (``BPF_MAP_GET_NEXT_KEY`` from no key)."""
        first = True
        while True:
            struct.pack_into(
                "=IIQQQ",
                self._attr,
                0,
                self.fd,
                0,
                0 if first else ctypes.addressof(self._key),
                ctypes.addressof(self._next),
                0,
            )
            try:
                _bpf(BPF_MAP_GET_NEXT_KEY, self._attr, f"MAP_GET_NEXT_KEY {self.name}")
            except BpfError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            first = False
            key = self._next.raw
            self._key.raw = key
            yield key

    def items(self) -> dict[bytes, bytes]:
        result: dict[bytes, bytes] = {}
        for key in list(self.keys()):
            value = self.lookup(key)
            if value is not None:
                result[key] = value
        return result

    def per_cpu_sums(self, slots: int) -> list[int]:
        """For a per-CPU array of ``__u64``: each slot summed over the CPUs."""
        sums = []
        for slot in range(slots):
            raw = self.lookup(struct.pack("=I", slot)) or b""
            sums.append(sum(v for (v,) in struct.iter_unpack("=Q", raw)))
        return sums
