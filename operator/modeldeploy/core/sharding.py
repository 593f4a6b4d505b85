"""Which operator replica serves which ModelDeployment, when the objects are sharded across replicas.

An object belongs to shard `i` of `n` when the 64-bit FNV-1a hash of its uid falls into the i-th of n equal
ranges of the hash space. That is the hash and the range arithmetic of Kubernetes' own sharded list and watch
(`shardRange(object.metadata.uid, '0x…', '0x…')`, k8s.io/apimachinery/pkg/sharding, alpha in 1.36): the same
assignment can move to the API server where that feature is on, and `selector()` is its expression.

A child (Deployment, Service, route) belongs to the shard of the owner named by its controller ownerReference,
whose uid it carries. A uid never changes, so an object stays on its shard as long as n stays the same.

Why the uid and not namespace/name: FNV-1a's top bits hardly change with a string's last bytes, so names that
differ only in a suffix (model-1, model-2, ...) would crowd into a few ranges. Uids are random (UUIDv4).
"""

from __future__ import annotations

from dataclasses import dataclass

HASH_SPACE = 1 << 64
_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
MAX_SHARDS = 64


def fnv1a64(text: str) -> int:
    """FNV-1a, 64 bits, of the UTF-8 bytes (Go's hash/fnv New64a, which the API server's shard selector uses)."""
    value = _FNV_OFFSET
    for byte in text.encode():
        value = ((value ^ byte) * _FNV_PRIME) % HASH_SPACE
    return value


def shard_of(uid: str, shards: int) -> int:
    """The index of the shard, of `shards`, that serves the object with this uid."""
    return fnv1a64(uid) * shards >> 64


def _hex(value: int) -> str:
    # The API server compares these as strings of equal length: 16 digits, or 17 for the end of the space.
    return f"0x{value:016x}"


@dataclass(frozen=True)
class Shard:
    """This replica's share of the objects: shard `index` of `count` (0-based). Shard(0, 1) serves everything."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"the number of shards must be between 1 and {MAX_SHARDS}, not {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index {self.index} is out of range for {self.count} shards (0-{self.count - 1})")

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owns(self, uid: str) -> bool:
        return not self.sharded or shard_of(uid, self.count) == self.index

    def hash_range(self) -> tuple[int, int]:
        """[start, end) of the hash space this shard serves."""
        start = -(-self.index * HASH_SPACE // self.count)
        end = -(-(self.index + 1) * HASH_SPACE // self.count)
        return start, end

    def selector(self) -> str:
        """This shard as a Kubernetes shard selector over object.metadata.uid (ShardedListAndWatch)."""
        start, end = self.hash_range()
        return f"shardRange(object.metadata.uid, '{_hex(start)}', '{_hex(end)}')"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
