"""TFLite model metadata for a classifier export, written with the ``flatbuffers`` package only.

MediaPipe's ``TextClassifier`` (Android/iOS/Python/Web) and the older Task
Library ``BertNLClassifier`` do not take a vocabulary or labels as arguments:
they read them from the model's *metadata*, a ``ModelMetadata`` flatbuffer
(file identifier ``M001``, schema ``metadata_schema.fbs`` of
tflite-support/MediaPipe) stored in a model buffer named ``TFLITE_METADATA``,
plus the associated files (``vocab.txt``, ``labels.txt``) appended to the
``.tflite`` as an uncompressed zip archive. The ``.tflite`` stays a valid
flatbuffer (LiteRT reads it from the front; the zip is found from the back).

The packages that ship a metadata writer cannot be used beside TensorFlow 2.21
(see ``android_demo_assets/README.md``), so :func:`add_classifier_metadata`
builds the same tables itself:

* subgraph input tensors ``ids`` / ``mask`` / ``segment_ids`` (MediaPipe's
  BERT preprocessor finds the inputs by these metadata names), in the order
  of the model's input tensors;
* one input process unit ``BertTokenizerOptions`` whose ``vocab_file`` is
  ``vocab.txt`` (type ``VOCABULARY``);
* the output tensor ``probability`` (float, stats min 0 / max 1) with
  ``labels.txt`` (type ``TENSOR_AXIS_LABELS``, one class name per line).

The schema has no lower-case flag: MediaPipe's and the Task Library's BERT
tokenizers always lower-case (as this uncased student does).

Example::

    from mobile_bert_distill.export.metadata import add_classifier_metadata, read_classifier_metadata
    data = add_classifier_metadata(open("clf.tflite", "rb").read(), "vocab.txt", ["neg", "pos"])
    print(read_classifier_metadata(data)["files"])   # ['vocab.txt', 'labels.txt']
"""

from __future__ import annotations

import io
import zipfile

METADATA_BUFFER_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
#: BertTokenizerOptions needs metadata parser 1.1.0 (tflite-support metadata versioning).
MIN_PARSER_VERSION = "1.1.0"
INPUT_METADATA = {  # signature input name -> (metadata name MediaPipe looks for, description)
    "input_ids": ("ids", "Tokenized ids of the input text: [CLS] wordpieces [SEP] [PAD]..."),
    "padding_mask": ("mask", "Mask with 1 for real tokens and 0 for padding tokens."),
    "segment_ids": ("segment_ids", "0 for the first sequence, 1 for the second sequence if exists."),
}
_CONTENT_FEATURE = 1          # ContentProperties.FeatureProperties
_UNIT_BERT_TOKENIZER = 4      # ProcessUnitOptions.BertTokenizerOptions
_FILE_AXIS_LABELS = 2         # AssociatedFileType.TENSOR_AXIS_LABELS
_FILE_VOCABULARY = 5          # AssociatedFileType.VOCABULARY
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def _input_order(model_bytes):
    """Signature names of the subgraph's input tensors, in the subgraph's order."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    sig = model.signatureDefs[0]
    by_index = {int(t.tensorIndex): t.name.decode() if isinstance(t.name, bytes) else t.name for t in sig.inputs}
    return [by_index[int(i)] for i in model.subgraphs[0].inputs]


def _metadata_flatbuffer(input_names, *, vocab_file, labels_file, name, description, version, author):
    import flatbuffers

    b = flatbuffers.Builder(1024)

    def table(fields, count):
        """``fields``: (slot, kind, value) with kind 'off' / 'u8' / 'i8'; offsets must exist already."""
        b.StartObject(count)
        for slot, kind, value in fields:
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "u8":
                b.PrependUint8Slot(slot, value, 0)
            else:
                b.PrependInt8Slot(slot, value, 0)
        return b.EndObject()

    def offsets(items):
        b.StartVector(4, len(items), 4)
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    def floats(values):
        b.StartVector(4, len(values), 4)
        for v in reversed(values):
            b.PrependFloat32(v)
        return b.EndVector()

    def associated_file(file_name, file_type, text):
        n, d = b.CreateString(file_name), b.CreateString(text)
        return table([(0, "off", n), (1, "off", d), (2, "i8", file_type)], 5)

    def feature_content():
        props = table([], 0)  # FeatureProperties {}
        return table([(0, "u8", _CONTENT_FEATURE), (1, "off", props)], 3)

    inputs = []
    for signature_name in input_names:
        md_name, md_description = INPUT_METADATA[signature_name]
        n, d = b.CreateString(md_name), b.CreateString(md_description)
        inputs.append(table([(0, "off", n), (1, "off", d), (3, "off", feature_content())], 7))
    vocab = associated_file(vocab_file, _FILE_VOCABULARY, "WordPiece vocabulary; token id = line number.")
    bert_options = table([(0, "off", offsets([vocab]))], 1)
    tokenizer = table([(0, "u8", _UNIT_BERT_TOKENIZER), (1, "off", bert_options)], 2)
    labels = associated_file(labels_file, _FILE_AXIS_LABELS, "Class names, one per line, in output order.")
    stats = table([(0, "off", floats([1.0])), (1, "off", floats([0.0]))], 2)
    out_name = b.CreateString("probability")
    out_description = b.CreateString("Softmax probability of each class (sums to 1).")
    output = table([(0, "off", out_name), (1, "off", out_description), (3, "off", feature_content()),
                    (5, "off", stats), (6, "off", offsets([labels]))], 7)
    subgraph = table([(2, "off", offsets(inputs)), (3, "off", offsets([output])),
                      (5, "off", offsets([tokenizer]))], 10)
    strings = [b.CreateString(s) for s in (name, description, version, author, MIN_PARSER_VERSION)]
    root = table([(0, "off", strings[0]), (1, "off", strings[1]), (2, "off", strings[2]),
                  (3, "off", offsets([subgraph])), (4, "off", strings[3]), (7, "off", strings[4])], 8)
    b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def add_classifier_metadata(model_bytes, vocab_path, labels, *, name="mobile-bert-distill text classifier",
                            description="Classifies text; uncased WordPiece BERT student (mobile-bert-distill).",
                            version="1", author="mobile-bert-distill"):
    """Return ``model_bytes`` with classifier metadata and ``vocab.txt``/``labels.txt`` packed in.

    ``model_bytes`` must be a classifier export (inputs ``input_ids``,
    ``segment_ids``, ``padding_mask``; output ``probabilities``) without
    metadata of its own.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fu

    labels = [str(x) for x in labels]
    if not labels or any(not x.strip() or "\n" in x for x in labels):
        raise ValueError("labels must be non-empty, one-line class names")
    input_names = _input_order(model_bytes)
    if sorted(input_names) != sorted(INPUT_METADATA):
        raise ValueError(f"expected the inputs {sorted(INPUT_METADATA)}, found {input_names}")
    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    existing = [m.name.decode() if isinstance(m.name, bytes) else m.name for m in (model.metadata or [])]
    if METADATA_BUFFER_NAME in existing:
        raise ValueError("the model already has TFLite metadata")
    meta = _metadata_flatbuffer(input_names, vocab_file="vocab.txt", labels_file="labels.txt", name=name,
                                description=description, version=version, author=author)
    buf = schema.BufferT()
    buf.data = list(meta)
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_BUFFER_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    out = io.BytesIO(bytes(fu.convert_object_to_bytearray(model)))
    out.seek(0, io.SEEK_END)
    with open(vocab_path, "rb") as f:
        vocab = f.read()
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as z:
        for file_name, data in (("vocab.txt", vocab), ("labels.txt", "".join(f"{x}\n" for x in labels).encode())):
            z.writestr(zipfile.ZipInfo(file_name, date_time=_ZIP_DATE), data)
    return out.getvalue()


# ------------------------------------------------------------------ reading it back
def _table(buf, pos):
    from flatbuffers.table import Table

    return Table(buf, pos)


def _field(tab, slot):
    return tab.Offset(4 + 2 * slot)


def _string(tab, slot):
    o = _field(tab, slot)
    return tab.String(o + tab.Pos).decode("utf-8") if o else None


def _tables(tab, slot):
    o = _field(tab, slot)
    if not o:
        return []
    start, n = tab.Vector(o), tab.VectorLen(o)
    return [_table(tab.Bytes, tab.Indirect(start + 4 * i)) for i in range(n)]


def _child(tab, slot):
    o = _field(tab, slot)
    return _table(tab.Bytes, tab.Indirect(o + tab.Pos)) if o else None


def _scalar(tab, slot, flags):
    o = _field(tab, slot)
    return tab.Get(flags, o + tab.Pos) if o else 0


def read_classifier_metadata(model_bytes):
    """Parse what :func:`add_classifier_metadata` wrote: a dict with ``name``, ``min_parser_version``,
    ``inputs`` (metadata names in input order), ``tokenizer``, ``vocab_file``, ``output``,
    ``labels_file``, ``files`` (names in the appended zip) and ``labels`` (from ``labels.txt``).
    Returns ``None`` for a model without TFLite metadata."""
    from ai_edge_litert.tools import flatbuffer_utils as fu
    from flatbuffers import number_types as N

    model = fu.read_model_from_bytearray(bytearray(model_bytes))
    entry = next((m for m in (model.metadata or [])
                  if (m.name.decode() if isinstance(m.name, bytes) else m.name) == METADATA_BUFFER_NAME), None)
    if entry is None:
        return None
    data = bytearray(bytes(bytearray(model.buffers[entry.buffer].data)))
    if bytes(data[4:8]) != FILE_IDENTIFIER:
        raise ValueError("the TFLITE_METADATA buffer is not a ModelMetadata flatbuffer")
    root = _table(data, N.UOffsetTFlags.py_type(int.from_bytes(data[:4], "little")))
    subgraph = _tables(root, 3)[0]
    units = _tables(subgraph, 5)
    tokenizer = vocab = None
    if units:
        kind = _scalar(units[0], 0, N.Uint8Flags)
        tokenizer = {_UNIT_BERT_TOKENIZER: "BertTokenizerOptions"}.get(kind, f"options type {kind}")
        files = _tables(_child(units[0], 1), 0)
        vocab = _string(files[0], 0) if files else None
    outputs = _tables(subgraph, 3)
    out_files = _tables(outputs[0], 6) if outputs else []
    with zipfile.ZipFile(io.BytesIO(bytes(model_bytes))) as z:
        names = z.namelist()
        labels = z.read("labels.txt").decode("utf-8").splitlines() if "labels.txt" in names else None
        stored = all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    return {
        "name": _string(root, 0),
        "min_parser_version": _string(root, 7),
        "inputs": [_string(t, 0) for t in _tables(subgraph, 2)],
        "tokenizer": tokenizer,
        "vocab_file": vocab,
        "output": _string(outputs[0], 0) if outputs else None,
        "labels_file": _string(out_files[0], 0) if out_files else None,
        "labels_file_type": _scalar(out_files[0], 2, N.Int8Flags) if out_files else None,
        "files": names,
        "files_stored_uncompressed": stored,
        "labels": labels,
    }
