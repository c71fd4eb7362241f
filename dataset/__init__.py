"""The MulSen-AD data contract: records, reader, writer, validation, statistics, scans, alignment, build, release."""
