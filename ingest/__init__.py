"""Image folders in, TFRecords out: what `ingest` writes and the pipeline's ExampleGen reads.

dataset.py   the folder walk, the three splits, decode-checking workers, dataset.json
sources.py   the one walk (links followed) and bounded reads of source files
decode.py    full decode of every image (pixel limit, modes, pixel digests for duplicates)
imageinfo.py what a JPEG/PNG header claims, without decoding
tfrecord.py  gzip TFRecords of tf.Example, written without importing TensorFlow
spans.py     span-N folders: numbering, windows, which files a run reads
builtin.py   the built-in digits dataset as an image folder
output.py    OUT: its lock, what --overwrite may replace, the atomic swap, recovery after a kill
processes.py worker processes that die with the ingest and ignore Ctrl-C
errors.py    IngestError (bad input, exit 2) and IngestBusyError (OUT locked, exit 4)
lock_holder.py who holds a lock (also used by the run lock and the Pusher's lock)
"""
