"""Schemas of the Sessions API: what its operations read (`requests`) and answer
(`responses`). The operations validate with them, and the OpenAPI document is
built from them."""
