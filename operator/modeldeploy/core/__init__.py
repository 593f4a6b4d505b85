"""Pure core: models, rendering and status maths. No I/O, no Kopf."""
