"""Dagster resources: the lakehouse handle, local or on object storage."""

from __future__ import annotations

import json

import dagster as dg

from lakehouse.api import Lakehouse
from lakehouse.core.config import Config


class LakehouseResource(dg.ConfigurableResource):
    """A lakehouse root on this machine (the embedded default).

    ``settings_json`` carries the full :class:`~lakehouse.core.config.Config` when the definitions
    are built from one (the CLI and tests); otherwise the configuration is loaded the usual way
    (``lakehouse.toml``, ``LAKEHOUSE_ROOT``) with ``root`` on top.
    """

    root: str
    settings_json: str = ""

    @classmethod
    def from_config(cls, config: Config) -> LakehouseResource:
        return cls(root=config.root, settings_json=json.dumps(config.to_dict()))

    def config(self) -> Config:
        if self.settings_json:
            return Config.from_dict(json.loads(self.settings_json)).with_root(self.root)
        return Config.load(root=self.root)

    def open(self) -> Lakehouse:
        return Lakehouse(self.config())


class ObjectStoreLakehouseResource(LakehouseResource):
    """A lakehouse root on S3-compatible storage (``s3://bucket/prefix``).

    Credentials come only from the environment, through ``dg.EnvVar`` in the definitions.
    """

    access_key_id: str | None = None
    secret_access_key: str | None = None
    endpoint: str | None = None
    region: str | None = None

    def config(self) -> Config:
        base = super().config()
        options = dict(base.storage_options)
        for key, value in (
            ("aws_access_key_id", self.access_key_id),
            ("aws_secret_access_key", self.secret_access_key),
            ("aws_endpoint", self.endpoint),
            ("aws_region", self.region),
        ):
            if value:
                options[key] = value
        if self.endpoint and self.endpoint.startswith("http://"):
            options.setdefault("allow_http", "true")
        from dataclasses import replace

        return replace(base, storage_options=options)


def lakehouse_resource(config: Config) -> LakehouseResource:
    """The local resource for a folder root, the object-store one for ``s3://…`` roots."""
    if config.is_local:
        return LakehouseResource.from_config(config)
    return ObjectStoreLakehouseResource(
        root=config.root,
        settings_json=json.dumps(config.to_dict()),
        access_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"),
        secret_access_key=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
        endpoint=dg.EnvVar("AWS_ENDPOINT_URL"),
        region=dg.EnvVar("AWS_REGION"),
    )
