"""One partition per source: a new source folder is a new partition."""

import dagster as dg

sources_partitions = dg.DynamicPartitionsDefinition(name="sources")
