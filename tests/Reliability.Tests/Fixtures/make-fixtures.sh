#!/usr/bin/env bash
# Makes the two hostile-input fixtures SkiaSharp cannot encode itself (it writes neither CMYK JPEG nor animated GIF).
# Needs ImageMagick (apt-get install imagemagick). Run from this folder; commit the outputs with this script.
set -euo pipefail
IM=/usr/bin/convert   # the Debian binary, not a stand-in earlier on PATH
samples=../../../samples/fashion/test
# A 64x64 CMYK JPEG (Adobe APP14, 4 components) of a sneaker.
"$IM" "$(ls "$samples"/sneaker/*.png | head -1)" -resize 64x64 -colorspace CMYK -quality 90 cmyk.jpg
# A two-frame animated GIF (bag, then dress), looping; the backbone must use frame 0.
"$IM" -delay 20 -loop 0 "$(ls "$samples"/bag/*.png | head -1)" "$(ls "$samples"/dress/*.png | head -1)" -resize 48x48 animated.gif
/usr/bin/identify cmyk.jpg animated.gif
