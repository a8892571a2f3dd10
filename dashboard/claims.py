"""Which review item each official's page shows, so that officials working the queue at once
are shown different items, whichever dashboard serves them.

Each page (a browser tab: one Streamlit session) claims the item it shows with a file of
its own in a folder beside the corrections log, which every `racelens dashboard` on the
results shares: two officials on two dashboards (two processes, as two laptops running
their own) were both shown the queue's first item, and all but the quickest found it
decided already while the items after it waited. A claim is made whole (written, then
linked into place, so a second page's claim of the same item fails; where the filesystem
has no hard links, created exclusively and written), replaced when its page shows another
item, released by the page's decision, and lapses after CLAIM_S (a page left open). It is
never a lock: where every item is shown elsewhere, a page shares the first, and the
corrections log orders the decisions (the second is refused: "kari decided this one
already").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from dashboard.review_queue import Item

CLAIM_S = 120.0  # how long an item shown to one official is left to them


@dataclass(frozen=True)
class Claim:
    key: str  # the item's (Item.key)
    session: str  # the page's
    official: str  # the name the page logs decisions under
    until: float  # seconds since the epoch (time.time(): every dashboard's clock)


def claims_folder(corrections: str) -> str:
    """The claims of the officials deciding into the log `corrections`, beside it."""
    log = os.path.abspath(corrections)
    return os.path.join(os.path.dirname(log), f".{os.path.basename(log)}.claims")


def _read(path: str) -> Claim | None:
    """The claim in the file; None where it is gone (released meanwhile) or no claim."""
    try:
        with open(path, encoding="utf-8") as f:
            return Claim(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None


def _made(temp: str, path: str) -> bool:
    """Puts the claim written in `temp` at `path` where none is there; False where one is:
    two pages cannot both make it. By a hard link, whole at once; where the filesystem
    has none (some SMB and FUSE mounts: every page was shown the first item), `path` is
    created exclusively and the claim copied in, a page reading it meanwhile finding no
    claim there (two officials may then share an item, as without claims)."""
    try:
        os.link(temp, path)
        return True
    except FileExistsError:
        return False
    except OSError:
        pass  # no hard links here (EPERM, ENOTSUP): any other trouble fails the create too
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with open(temp, "rb") as claim, os.fdopen(fd, "wb") as f:
        shutil.copyfileobj(claim, f)
    return True


class Claims:
    """The claims in one folder (claims_folder); `now` is time.time()."""

    def __init__(self, folder: str) -> None:
        self._folder = folder

    def _path(self, key: str) -> str:
        # An item's key holds bibs and station ids as given: hashed, it is a safe file name.
        return os.path.join(self._folder, hashlib.sha256(key.encode()).hexdigest()[:32] + ".json")

    def _all(self) -> list[tuple[str, Claim]]:
        try:
            names = [n for n in os.listdir(self._folder) if n.endswith(".json")]
        except OSError:  # none yet
            return []
        paths = (os.path.join(self._folder, name) for name in names)
        return [(path, claim) for path in paths if (claim := _read(path)) is not None]

    def taken(self, session: str, now: float) -> dict[str, str]:
        """The items other pages show now, each with the official it is shown to."""
        return {c.key: c.official for _, c in self._all() if c.session != session and c.until > now}

    def show(self, session: str, official: str, key: str, now: float) -> bool:
        """Claims the item for the page, releasing the page's claim of another; False where
        another page's claim holds it (made since `taken` looked). A folder that cannot be
        written (a read-only mount) claims nothing, and each page is shown the first item,
        as before claims."""
        claim = Claim(key, session, official, now + CLAIM_S)
        path = self._path(key)
        try:
            os.makedirs(self._folder, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self._folder, suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(asdict(claim), f)
                if not _made(temp, path):
                    held = _read(path)
                    if held is not None and held.session != session and held.until > now:
                        return False
                    os.replace(temp, path)  # the page's own again, or lapsed
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
        except OSError:
            return True
        self.release(session, now, keep=key)
        return True

    def release(self, session: str, now: float, keep: str | None = None) -> None:
        """Removes the page's claims (but that of `keep`), and claims lapsed for long (a page
        closed with an item shown): read at each run of every page, they would pile up."""
        for path, c in self._all():
            if (c.session == session and c.key != keep) or c.until + CLAIM_S < now:
                with contextlib.suppress(OSError):
                    os.unlink(path)


def claim_first_free(
    queue: Sequence[Item], claims: Claims, session: str, official: str, now: float
) -> Item:
    """The first item of the queue that no other page shows, claimed for this one; the first
    of all, unclaimed, where each one is shown elsewhere."""
    taken = claims.taken(session, now)
    for item in queue:
        if item.key not in taken and claims.show(session, official, item.key, now):
            return item
    return queue[0]
