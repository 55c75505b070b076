"""Pluggable VMN apps. Each returns the rules it wants as data (see ``apps.base``)."""
