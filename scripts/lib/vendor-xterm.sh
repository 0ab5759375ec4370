#!/bin/sh
# Makes web/vendor/xterm.js and xterm.css, the terminal of the panel's
# /terminal page, from Debian's node-xterm (xterm.js 3.8, CommonJS only)
# bundled for the browser with Debian's esbuild: Terminal is
# window.XtermBundle.Terminal. Run when node-xterm changes; the result is
# kept in the repository so the panel needs no build step.
set -eu
cd "$(dirname "$0")/../.."
missing=""
for p in node-xterm esbuild; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >/dev/null
fi
mkdir -p web/vendor
esbuild /usr/share/nodejs/xterm/lib/public/Terminal.js --bundle --format=iife --global-name=XtermBundle \
    --minify --legal-comments=inline --outfile=web/vendor/xterm.js \
    --banner:js="/*! xterm.js $(dpkg-query -W -f='${Version}' node-xterm) - MIT License - Copyright (c) 2017-2019 The xterm.js authors; bundled from Debian's node-xterm by scripts/lib/vendor-xterm.sh */"
cp /usr/share/nodejs/xterm/lib/xterm.css web/vendor/xterm.css
echo "web/vendor: xterm.js $(dpkg-query -W -f='${Version}' node-xterm)"
