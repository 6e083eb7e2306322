"""Run the Google emulators standalone, for shell demos.

    cd Tests/integration && python3 -m emulators --dir /tmp/demo
    python3 Tests/integration/emulators/run.py --dir /tmp/demo

Starts the token endpoint, metadata server and IAM Credentials emulator on free loopback ports,
writes credential files into --dir, prints ONE JSON line on stdout (addresses and file paths, never
secrets) and runs until SIGTERM/SIGINT. Also writes the same JSON to --info-file when given.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading

from .google import Emulators


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="emulators", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", required=True, help="directory for key files (created if missing)")
    ap.add_argument("--email", default="credproxy-demo@credproxy-test.iam.gserviceaccount.com",
                    help="service-account email of the generated key file")
    ap.add_argument("--impersonate", default="target-sa@credproxy-test.iam.gserviceaccount.com",
                    help="target email for the generated impersonated_service_account file")
    ap.add_argument("--metadata-email", default=None, help="email the metadata server reports")
    ap.add_argument("--tls-cert", help="serve token endpoint and IAM over HTTPS with this cert (PEM)")
    ap.add_argument("--tls-key", help="private key for --tls-cert")
    ap.add_argument("--lifetime", type=int, default=None, help="lifetime (s) of every token issued")
    ap.add_argument("--info-file", help="also write the JSON line to this file")
    ap.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = ap.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")

    os.makedirs(args.dir, exist_ok=True)
    kw = {}
    if args.metadata_email:
        kw["metadata_email"] = args.metadata_email
    emu = Emulators(args.dir, tls=(args.tls_cert, args.tls_key) if args.tls_cert else None, verbose=args.verbose, **kw)
    emu.start()
    if args.lifetime is not None:
        for s in emu.servers:
            s.set_lifetime(args.lifetime)

    sa = emu.new_service_account(args.email, args.dir, filename="service-account.json")
    user = emu.new_authorized_user(args.dir, filename="authorized-user.json")
    imp = emu.new_impersonated(args.impersonate, sa, dir=args.dir, filename="impersonated.json")
    cid, csec = emu.new_client()
    cc_path = os.path.join(args.dir, "client-credentials.json")
    fd = os.open(cc_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"client_id": cid, "client_secret": csec, "token_uri": emu.token_url}, fh, indent=2)
    pub_path = os.path.join(args.dir, "id-token-signing-key.pub.pem")
    with open(pub_path, "w") as fh:
        fh.write(emu.id_token_public_key_pem)

    info = emu.describe()
    info.update(
        {
            "pid": os.getpid(),
            "service_account_email": sa.email,
            "service_account_key": sa.path,
            "authorized_user": user.path,
            "impersonated": imp,
            "impersonation_target": args.impersonate,
            "client_credentials": cc_path,
            "id_token_public_key": pub_path,
        }
    )
    line = json.dumps(info, sort_keys=True)
    if args.info_file:
        tmp = args.info_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(line + "\n")
        os.replace(tmp, args.info_file)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

    done = threading.Event()

    def on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(1.0):
        pass
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
