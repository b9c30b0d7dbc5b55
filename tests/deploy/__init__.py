"""Deployment tests: docker-compose, Kubernetes manifests, the real Docker stack, packaging."""
