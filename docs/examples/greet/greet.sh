#!/bin/sh
# A complete skill in POSIX shell: one request line in, frames out.
IFS= read -r request
# The host writes compact JSON, and the input schema admits only letters and spaces in
# `name`, so sed can pick out these string fields.
field() { printf '%s' "$request" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
id=$(field id)
if [ "$(field action)" != hello ]; then
  printf '{"type":"result","id":"%s","ok":false,"error":{"code":"unknown_action","message":"only hello"}}\n' "$id"
  exit 0
fi
name=$(field name)
printf '{"type":"progress","id":"%s","message":"greeting","fraction":0.5}\n' "$id"
echo "greeting $name" >&2
printf '{"type":"result","id":"%s","ok":true,"output":{"greeting":"Hello, %s!"}}\n' "$id" "$name"
