"""Where an unattended run finds a key passphrase or an HSM PIN: an environment variable, or a
systemd credential.

An environment variable is what cron can pass, but it is readable by every process of the same
user (``/proc/PID/environ``) and ends up in shells' histories and unit files. systemd's
``LoadCredential=NAME:PATH`` instead copies the secret into a private, non-swappable folder only the
service can read and names that folder in ``$CREDENTIALS_DIRECTORY``; a container runtime mounting
secrets under ``/run/secrets`` works the same with ``CREDENTIALS_DIRECTORY=/run/secrets``. The
variable, when set, wins, so an operator can still override a credential by hand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from metadata_templates.errors import ConfigurationError

PASSPHRASE_ENV = "CFL_KEY_PASSPHRASE"  # noqa: S105  (the variable's name, not a secret)
HSM_PIN_ENV = "CFL_HSM_PIN"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
# The credential name each variable stands for (deploy/*.service LoadCredential= uses these).
CREDENTIAL_FOR = {PASSPHRASE_ENV: "cfl-key-passphrase", HSM_PIN_ENV: "cfl-hsm-pin"}
_LIMIT = 64 * 1024  # a passphrase or PIN; anything larger is not one


def environment_secret(variable: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The secret ``variable`` names: the variable itself, else the credential file
    ``$CREDENTIALS_DIRECTORY/<name>`` (trailing newlines removed, as ``$(cat FILE)`` would), else
    None.

    Raises:
        ConfigurationError: the credential file exists but cannot be read, is too large, or is not
            UTF-8 text.
    """
    env = os.environ if environ is None else environ
    if variable in env:
        return env[variable]
    folder = env.get(CREDENTIALS_ENV)
    name = CREDENTIAL_FOR.get(variable)
    if not folder or name is None:
        return None
    path = Path(folder) / name
    try:
        with path.open("rb") as handle:
            data = handle.read(_LIMIT + 1)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigurationError(
            f"credential {path}: cannot read ({e.strerror}); expected the {variable} secret"
        ) from e
    if len(data) > _LIMIT:
        raise ConfigurationError(
            f"credential {path}: size: found more than {_LIMIT} bytes, expected a passphrase or PIN"
        )
    try:
        return data.decode().rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise ConfigurationError(
            f"credential {path}: found bytes that are not UTF-8, expected a passphrase or PIN as text"
        ) from e
