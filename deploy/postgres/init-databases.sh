#!/bin/bash
# One role and database per service (the official postgres image runs this once at first start).
set -euo pipefail
for svc in roster dispatch notify; do
  var="${svc^^}_DB_PASSWORD"
  psql -v ON_ERROR_STOP=1 -U postgres <<SQL
CREATE ROLE muster_${svc} LOGIN PASSWORD '${!var}';
CREATE DATABASE muster_${svc} OWNER muster_${svc};
SQL
done
