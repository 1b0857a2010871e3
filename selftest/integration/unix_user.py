"""The local Unix account the SMB clients log in as.

The account is created once (useradd -M, no home, no login shell) and left in
place; its SMB password lives only in each throwaway smbd's passdb.
"""

import dataclasses
import pwd

import processes

DEFAULT_NAME = "copyoffload-test"
DEFAULT_PASSWORD = "Copy-offload-1"


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    password: str
    uid: int
    gid: int

    @property
    def credentials(self):
        return f"{self.name}%{self.password}"


def ensure_user(name=DEFAULT_NAME, password=DEFAULT_PASSWORD):
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        processes.run(["useradd", "-M", "-U", "-s", "/usr/sbin/nologin",
                       "-c", "copyoffload integration tests", name])
        entry = pwd.getpwnam(name)
    return User(name, password, entry.pw_uid, entry.pw_gid)
