#!/bin/sh
# The __NAME__ skill in POSIX shell: one request line on stdin, frames on stdout
# (docs/protocol.md). Log to stderr: every line on stdout must be a frame.
IFS= read -r request
# The host writes compact JSON, and the input schema admits only letters and spaces in
# `name`, so sed can pick out these string fields. Anything richer wants a JSON tool.
field() { printf '%s' "$request" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
id=$(field id)
if [ "$(field action)" != hello ]; then
  printf '{"type":"result","id":"%s","ok":false,"error":{"code":"unknown_action","message":"only hello"}}\n' "$id"
  exit 0
fi
name=$(field name)
echo "greeting $name" >&2
printf '{"type":"result","id":"%s","ok":true,"output":{"greeting":"Hello, %s!"}}\n' "$id" "$name"
