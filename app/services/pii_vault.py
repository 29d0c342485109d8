"""The PII vault: tenant policies, tokenization at ingest, reveal for `pii:read` callers.

Keys: one secret (CAIRN_GOVERNANCE__PII_KEY, or `<data_dir>/pii.key` generated on first start)
derives two keys with HKDF: an AES-256-GCM key that encrypts tokenized values (bound to their
tenant and token as associated data) and an HMAC-SHA256 key for the keyed hash every value is
recorded under. A token is derived from that hash, so one value always gets one token per tenant,
and an erasure request finds a data subject's documents without decrypting anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.models import ParsedDocument, Principal, UtcDateTime
from core.settings import GovernanceSettings, Settings
from core.tables import utcnow
from core.tables_governance import PiiOccurrence, PiiVaultEntry, TenantPiiPolicy
from ingestion.pii import (
    TOKEN,
    Finding,
    PiiAction,
    PiiPolicy,
    PiiType,
    Redacted,
    normalize,
    redact_document,
    token_text,
)

KEY_FILE = "pii.key"
KEY_BYTES = 32
_TOKEN_LENGTHS = (8, 12, 16, 64)  # hex digits; longer only when a shorter token is taken


class PiiKeys:
    def __init__(self, secret: bytes) -> None:
        self._aead = AESGCM(_derive(secret, b"cairn pii encryption"))
        self._mac_key = _derive(secret, b"cairn pii hmac")

    @classmethod
    def load(cls, settings: GovernanceSettings, data_dir: Path) -> PiiKeys:
        if settings.pii_key is not None:
            return cls(settings.pii_key.get_secret_value().encode())
        return cls(_key_file(data_dir / KEY_FILE))

    def mac(self, tenant_id: str, normalized: str) -> str:
        return hmac.new(self._mac_key, f"{tenant_id}\x1f{normalized}".encode(), hashlib.sha256).hexdigest()

    def encrypt(self, tenant_id: str, token: str, value: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, value.encode(), f"{tenant_id}\x1f{token}".encode())

    def decrypt(self, tenant_id: str, token: str, blob: bytes) -> str:
        return self._aead.decrypt(blob[:12], blob[12:], f"{tenant_id}\x1f{token}".encode()).decode()


def _derive(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _key_file(path: Path) -> bytes:
    """Read the key file, or create it (0600) if no process has yet. A new key is written in
    full to a private temporary file, then hard-linked into place: the link fails if another
    process got there first, so every process uses the first key written and none ever reads a
    half-written file. A file that does not hold a 32-byte key is a start-up error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process won: use its key
        finally:
            tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    raw = path.read_text().strip()
    try:
        key = base64.urlsafe_b64decode(raw)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(
            f"{path} does not hold a {KEY_BYTES}-byte key (urlsafe base64); restore the key file the "
            "data was written with, or set CAIRN_GOVERNANCE__PII_KEY"
        )
    return key


class PiiPolicyPublic(BaseModel):
    policy: dict[PiiType, PiiAction]  # every type, keep where nothing else is set
    source: str  # "tenant" (set with PUT) or "default" (CAIRN_GOVERNANCE__PII_POLICY)
    updated_at: UtcDateTime | None = None
    updated_by: str | None = None


class PiiPolicyUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: dict[PiiType, PiiAction]


def parse_policy(raw: Mapping[str, str]) -> dict[PiiType, PiiAction]:
    """Settings -> policy; an unknown type is a start-up error that names the known ones."""
    known = {t.value for t in PiiType}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"CAIRN_GOVERNANCE__PII_POLICY names unknown PII types {unknown}; known: {sorted(known)}")
    return {PiiType(k): v for k, v in raw.items()}  # type: ignore[misc]


class PiiVault:
    """Implements `ingestion.pii.PiiRedactor` for the pipeline and `revealer` for answers."""

    def __init__(self, sessions: sessionmaker[Session], keys: PiiKeys, default_policy: PiiPolicy) -> None:
        self._sessions = sessions
        self.keys = keys
        self._default = dict(default_policy)

    # ---- policy ------------------------------------------------------------------------------

    def policy(self, tenant_id: str) -> PiiPolicyPublic:
        with self._sessions() as s:
            row = s.get(TenantPiiPolicy, tenant_id)
        if row is None:
            return PiiPolicyPublic(policy=_complete(self._default), source="default")
        stored = {PiiType(k): v for k, v in row.policy.items() if k in PiiType.__members__}
        return PiiPolicyPublic(
            policy=_complete(stored), source="tenant", updated_at=row.updated_at, updated_by=row.updated_by
        )

    def redacts(self, tenant_id: str) -> bool:
        """Whether the tenant's policy now masks or tokenizes any type."""
        return any(action != "keep" for action in self.policy(tenant_id).policy.values())

    def set_policy(self, principal: Principal, update: PiiPolicyUpdate) -> PiiPolicyPublic:
        stored = {k.value: v for k, v in update.policy.items()}
        with self._sessions.begin() as s:
            row = s.get(TenantPiiPolicy, principal.tenant_id)
            if row is None:
                s.add(TenantPiiPolicy(tenant_id=principal.tenant_id, policy=stored, updated_by=principal.user))
            else:
                row.policy, row.updated_by, row.updated_at = stored, principal.user, utcnow()
        return self.policy(principal.tenant_id)

    # ---- ingest ------------------------------------------------------------------------------

    def redact(self, tenant_id: str, doc_id: str, version: int, doc: ParsedDocument, title: str = "") -> Redacted:
        policy = self.policy(tenant_id).policy
        for attempt in range(3):
            try:
                with self._sessions.begin() as s:
                    tokens: dict[str, str] = {}

                    def tokenize(f: Finding, s: Session = s, tokens: dict[str, str] = tokens) -> str:
                        mac = self.keys.mac(tenant_id, normalize(f.type, f.value))
                        if mac not in tokens:
                            tokens[mac] = self._token(s, tenant_id, f, mac)
                        return tokens[mac]

                    result = redact_document(doc, policy, tokenize, title)
                    self._record(s, tenant_id, doc_id, version, result.findings, policy, tokens)
                return result
            except IntegrityError:  # another job stored the same new value first: its token wins
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _token(self, s: Session, tenant_id: str, f: Finding, mac: str) -> str:
        existing = s.scalar(
            select(PiiVaultEntry.token).where(PiiVaultEntry.tenant_id == tenant_id, PiiVaultEntry.value_hmac == mac)
        )
        if existing is not None:
            return existing
        token = ""
        for n in _TOKEN_LENGTHS:
            token = token_text(f.type, mac[:n])
            if s.get(PiiVaultEntry, (tenant_id, token)) is None:
                break
        s.add(PiiVaultEntry(
            tenant_id=tenant_id, token=token, pii_type=f.type.value, value_hmac=mac,
            ciphertext=self.keys.encrypt(tenant_id, token, f.value),
        ))
        s.flush()
        return token

    def _record(
        self, s: Session, tenant_id: str, doc_id: str, version: int, findings: list[Finding], policy: PiiPolicy,
        tokens: Mapping[str, str],
    ) -> None:
        """Counts and keyed hashes of what this version contains (re-run safe: replaces)."""
        s.execute(delete(PiiOccurrence).where(
            PiiOccurrence.tenant_id == tenant_id, PiiOccurrence.doc_id == doc_id, PiiOccurrence.version == version))
        rows: dict[str, PiiOccurrence] = {}
        for f in findings:
            mac = self.keys.mac(tenant_id, normalize(f.type, f.value))
            if mac in rows:
                rows[mac].count += 1
                continue
            rows[mac] = PiiOccurrence(
                tenant_id=tenant_id, doc_id=doc_id, version=version, value_hmac=mac, pii_type=f.type.value,
                action=policy.get(f.type, "keep"), token=tokens.get(mac), count=1,
            )
        s.add_all(rows.values())

    # ---- read --------------------------------------------------------------------------------

    def revealer(self, principal: Principal, cited: Iterable[tuple[str, int, str]]) -> Callable[[str], str]:
        """Tokens -> original values in an answer, for callers holding `pii:read` (others see
        tokens). Only tokens that occur in `cited`, the (doc_id, version, verbatim span) quotes
        of chunks the caller could read, and that ingestion itself wrote into that document
        version are revealed: a token the model was asked to repeat, or a token string planted
        in a document's text, stays a token."""
        if not principal.can_read_pii():
            return _same
        spans: dict[tuple[str, int], set[str]] = {}
        for doc_id, version, text in cited:
            spans.setdefault((doc_id, version), set()).update(m.group(0) for m in TOKEN.finditer(text))
        wanted = {t for tokens in spans.values() for t in tokens}
        if not wanted:
            return _same
        tenant = principal.tenant_id
        with self._sessions() as s:
            recorded = s.execute(
                select(PiiOccurrence.doc_id, PiiOccurrence.version, PiiOccurrence.token).where(
                    PiiOccurrence.tenant_id == tenant, PiiOccurrence.token.in_(wanted),
                    PiiOccurrence.doc_id.in_({d for d, _ in spans}),
                )
            ).tuples().all()
            allowed = {t for d, v, t in recorded if t is not None and t in spans.get((d, v), set())}
            rows = s.execute(
                select(PiiVaultEntry.token, PiiVaultEntry.ciphertext).where(
                    PiiVaultEntry.tenant_id == tenant, PiiVaultEntry.token.in_(allowed)
                )
            ).tuples().all() if allowed else []
        values = {token: self.keys.decrypt(tenant, token, blob) for token, blob in rows}
        if not values:
            return _same
        return lambda text: TOKEN.sub(lambda m: values.get(m.group(0), m.group(0)), text)


def _same(text: str) -> str:
    return text


def _complete(policy: Mapping[PiiType, PiiAction]) -> dict[PiiType, PiiAction]:
    return {t: policy.get(t, "keep") for t in PiiType}



def build_pii_vault(settings: Settings, sessions: sessionmaker[Session]) -> PiiVault:
    """One per process (API and every worker), all sharing one key: see PiiKeys.load."""
    gov = settings.governance
    return PiiVault(sessions, PiiKeys.load(gov, settings.data_dir), parse_policy(gov.pii_policy))
