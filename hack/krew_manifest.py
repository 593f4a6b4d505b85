"""Renders .krew.yaml (a krew-release-bot template) for a tag and the archives built for it.

    python3 hack/krew_manifest.py v0.1.0 DIR > modeldeploy.krew.yaml

Each `{{addURIAndSha "URL" .TagName }}` becomes the URL's `uri` and the `sha256` of the archive of the same name in
DIR, as krew-release-bot does from the published release. Only the standard library: the release job runs it
with the runner's python3.
"""

from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent.parent / ".krew.yaml"
ADD_URI_AND_SHA = re.compile(r'^(?P<indent> *)\{\{ *addURIAndSha "(?P<url>[^"]+)" \.TagName *\}\}$', re.M)
TAG = re.compile(r"\{\{ *\.TagName *\}\}")


def render(template: str, tag: str, archives: Path) -> str:
    def uri_and_sha(match: re.Match[str]) -> str:
        url = TAG.sub(tag, match["url"])
        archive = archives / url.rsplit("/", 1)[1]
        if not archive.is_file():
            raise SystemExit(f"error: {archive} is missing: the release builds every archive the manifest names")
        sha256 = hashlib.sha256(archive.read_bytes()).hexdigest()
        return f"{match['indent']}uri: {url}\n{match['indent']}sha256: {sha256}"

    return TAG.sub(tag, ADD_URI_AND_SHA.sub(uri_and_sha, template))


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    tag, archives = sys.argv[1], Path(sys.argv[2])
    sys.stdout.write(render(TEMPLATE.read_text(), tag, archives))


if __name__ == "__main__":
    main()
