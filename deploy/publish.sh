#!/usr/bin/env bash
# Publishes the graft CLI and the three services, self-contained for linux-x64 (no .NET needed on the target),
# into one folder: <out>/cli/graft and <out>/services/{BackboneService,HeadService,Gateway}/.
# `<out>/cli/graft up` finds the services beside it. Usage: deploy/publish.sh [out]   (default artifacts/graft)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-$here/artifacts/graft}")"
rm -rf "$out"
publish() { # project output-folder
  dotnet publish "$here/$1" -c Release -r linux-x64 --self-contained -o "$out/$2" -nologo -v quiet -clp:NoSummary \
    -p:GenerateDocumentationFile=false
}
publish services/BackboneService/BackboneService.csproj services/BackboneService
publish services/HeadService/HeadService.csproj services/HeadService
publish services/Gateway/Gateway.csproj services/Gateway
publish tools/Graft.Cli/Graft.Cli.csproj cli
echo "Published to $out ($(du -sh "$out" | cut -f1)); run: $out/cli/graft up --data-dir /var/lib/graft"
