"""encrypt: AES-CBC with PKCS#7 padding and a fresh random IV per value; the result is
base64(IV || ciphertext), as the reference writes it (docs/reference.md section 4.5). `decrypt` reverses it
for data owners who hold the key."""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING

from anonymizer.errors import ProcessingError
from anonymizer.methods.base import ENCRYPT, Method, PrimitiveAction, ResourceState, core_form
from anonymizer.r4.model import Element
from anonymizer.r4.primitives import value_text

if TYPE_CHECKING:
    from anonymizer.config import Parameters

_BLOCK = 16
# `cryptography` is imported by the functions that use it, not by this module: importing it costs
# about 5 ms of every start, and most configurations never encrypt. Per value, the import
# statement finds the module loaded, a trifle next to setting up AES.


def encrypt(plaintext: str, key: str) -> str:
    if not plaintext:
        return plaintext
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(_BLOCK)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode("utf-8")), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode("ascii")


def decrypt(ciphertext: str | None, key: str) -> str | None:
    """The inverse of `encrypt`. Raises ProcessingError on text that was not produced by it."""
    if not ciphertext:
        return ciphertext
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    try:
        raw = base64.b64decode(ciphertext, validate=True)
        if len(raw) < 2 * _BLOCK or len(raw) % _BLOCK:
            raise ValueError("wrong length")
        decryptor = Cipher(algorithms.AES(key.encode("utf-8")), modes.CBC(raw[:_BLOCK])).decryptor()
        padded = decryptor.update(raw[_BLOCK:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")
    except (ValueError, binascii.Error):
        raise ProcessingError("The value cannot be decrypted with this key") from None


class EncryptMethod(Method):
    name = "encrypt"
    varies = True

    @classmethod
    def key_needed(cls, parameters: Parameters) -> str | None:
        return "encryptKey"

    def primitive_action(self, element: Element, parent_type: str) -> PrimitiveAction | None:
        key = self.parameters.key("encryptKey")

        def encrypt_value(value: object, state: ResourceState) -> str:
            state.ops |= ENCRYPT
            return encrypt(value_text(value), key)

        return core_form(encrypt_value, "encrypt")
