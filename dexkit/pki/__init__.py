"""The CA and the serving certificate: create, load, inspect, check, ensure.

Replaces the guide's gencert.sh (RSA-2048, a CA valid 10 days with the leaf's CN, keys left at
the umask) with what mkcert and cert-manager do: a path-length-0 CA, a leaf with every SAN and
the serverAuth EKU, random serials, a back-dated notBefore for clock skew, and keys that are
0600 from the first byte. File names stay the guide's (``ssl/ca.pem`` …) so that its later
steps still work.
"""

from dexkit.pki.assets import (
    RENEW_BEFORE,
    AssetPlan,
    Change,
    Wanted,
    ensure_assets,
    plan_assets,
    plan_rotate,
    rotate,
)
from dexkit.pki.checks import (
    ROTATE_CA,
    Problem,
    Severity,
    TLSPaths,
    ca_problems,
    check_assets,
    check_key_dir,
    check_key_modes,
)
from dexkit.pki.inspection import (
    CertInfo,
    days_left,
    describe,
    fingerprint,
    inspect_cert,
    is_ca,
    key_matches,
    key_type_of,
    load_cert,
    load_key,
    sans_of,
    verify_chain,
    write_cert,
    write_key,
)
from dexkit.pki.issue import (
    CLOCK_SKEW,
    CN_MAX,
    LONG_NAME_CN,
    PrivateKey,
    ca_common_name,
    cert_pem,
    create_ca,
    generate_key,
    issue_serving_cert,
    key_pem,
)

__all__ = [
    "CLOCK_SKEW",
    "CN_MAX",
    "LONG_NAME_CN",
    "RENEW_BEFORE",
    "ROTATE_CA",
    "AssetPlan",
    "CertInfo",
    "Change",
    "PrivateKey",
    "Problem",
    "Severity",
    "TLSPaths",
    "Wanted",
    "ca_common_name",
    "ca_problems",
    "cert_pem",
    "check_assets",
    "check_key_dir",
    "check_key_modes",
    "create_ca",
    "days_left",
    "describe",
    "ensure_assets",
    "fingerprint",
    "generate_key",
    "inspect_cert",
    "is_ca",
    "issue_serving_cert",
    "key_matches",
    "key_pem",
    "key_type_of",
    "load_cert",
    "load_key",
    "plan_assets",
    "plan_rotate",
    "rotate",
    "sans_of",
    "verify_chain",
    "write_cert",
    "write_key",
]
