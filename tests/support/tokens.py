"""A JWT issuer for tests: an RSA key made on the spot, its JWKS, and tokens it signs.

Gateways with `auth.jwt` check tokens in Envoy (jwt_authn); these are real RS256
tokens, made with the `cryptography` package, so what Envoy accepts or refuses here
is what it would accept or refuse from a real identity provider.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ISSUER = "https://issuer.test"
AUDIENCE = "meshroute"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_json(value: dict[str, Any]) -> str:
    return _b64url(json.dumps(value, separators=(",", ":")).encode())


def _uint(number: int) -> str:
    return _b64url(number.to_bytes((number.bit_length() + 7) // 8, "big"))


@dataclass
class Issuer:
    """Signs tokens with its own RSA key; `jwks` is what a Gateway trusts."""

    kid: str = "test-key"
    issuer: str = ISSUER
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    @property
    def jwks(self) -> str:
        public = self.key.public_key().public_numbers()
        jwk = {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": _uint(public.n),
            "e": _uint(public.e),
        }
        return json.dumps({"keys": [jwk]})

    def claims(self, subject: str, **overrides: Any) -> dict[str, Any]:
        """Good claims for `subject`, valid for an hour from now; `overrides` replace
        (or, with None, remove) any of them."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": subject,
            "iat": now,
            "exp": now + 3600,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, subject: str, **overrides: Any) -> str:
        """An RS256 token signed by this issuer's key."""
        header = _b64url_json({"alg": "RS256", "typ": "JWT", "kid": self.kid})
        signed = f"{header}.{_b64url_json(self.claims(subject, **overrides))}"
        signature = self.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signed}.{_b64url(signature)}"

    def unsigned_token(self, subject: str) -> str:
        """The same claims with `alg: none` and no signature, as an attacker would send."""
        header = _b64url_json({"alg": "none", "typ": "JWT"})
        return f"{header}.{_b64url_json(self.claims(subject))}."
