#!/usr/bin/env bash
# The benchmark in one command: builds what it runs (Release), then runs it.
#   bench/run.sh                 full run (about 15 minutes on 2 cores); writes bench/RESULTS.md and bench/*.png
#   bench/run.sh --quick         smoke test with tiny counts; writes bench/out/quick/
#   bench/run.sh --no-services   only the rows that need no Graft service
#   bench/run.sh --render DIR    re-render DIR/RESULTS.md and plots from DIR/results.json
#   bench/run.sh --finetune-curve [--report-only]   issue 11 depth/accuracy curve, in process (resumable; see bench/README.md)
#   bench/run.sh --finetune-latency [--quick]       issue 11 fine-tuned vs frozen head Predict row alone (services), added
#                                                   to bench/results.json and RESULTS.md (--quick: bench/out/quick/)
set -euo pipefail
cd "$(dirname "$0")/.."

data=/usr/share/datasets/fashion-mnist
if [[ ! -f $data/train-images-idx3-ubyte.gz || ! -f $data/t10k-images-idx3-ubyte.gz ]]; then
  echo "bench: Fashion-MNIST is missing from $data. Install it with: sudo apt-get install dataset-fashion-mnist" >&2
  exit 1
fi
if [[ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]]; then
  echo "bench: the plots need a font. Install one with: sudo apt-get install fonts-dejavu-core" >&2
  exit 1
fi

projects=(bench/MlNetBaseline/MlNetBaseline.csproj bench/Graft.Bench/Graft.Bench.csproj)
# The fine-tuned Predict row needs the services but not the ML.NET peer.
if [[ " $* " == *" --finetune-latency "* ]]; then projects=(bench/Graft.Bench/Graft.Bench.csproj); fi
if [[ " $* " != *" --no-services "* && " $* " != *" --render "* && " $* " != *" --finetune-curve "* ]]; then
  projects=(services/BackboneService/BackboneService.csproj services/HeadService/HeadService.csproj
            services/Gateway/Gateway.csproj "${projects[@]}")
fi
for project in "${projects[@]}"; do
  dotnet build "$project" -c Release --nologo -v quiet -clp:ErrorsOnly
done

# The build above leaves the 1-minute load average high for a while; wait (at most 2 minutes) for it to settle so the
# load the run records at its start is the machine's, not the build's.
for _ in $(seq 24); do
  read -r load _ < /proc/loadavg
  awk -v l="$load" -v c="$(nproc)" 'BEGIN { exit !(l < c) }' && break
  sleep 5
done
read -r load _ < /proc/loadavg
echo "bench: load average (1 min) before the run: $load on $(nproc) cores; numbers are only as quiet as the machine"
exec dotnet bench/Graft.Bench/bin/Release/net10.0/linux-x64/Graft.Bench.dll "$@"
