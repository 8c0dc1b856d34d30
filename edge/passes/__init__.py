"""Signed passes (SPEC §3): issue, verify, keys, QR."""
from edge.passes.codec import PassClaims, PassRejected, issue_pass, verify_pass
from edge.passes.keys import KeyRing

__all__ = ["KeyRing", "PassClaims", "PassRejected", "issue_pass", "verify_pass"]
