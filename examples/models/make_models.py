#!/usr/bin/python3
"""Build infergate's sample model repository.

Trains three small models on data that needs no download (scikit-learn's bundled
iris and digits sets, and a synthetic sentiment task defined here), exports
each to ONNX with a dynamic batch dimension, and writes beside it a config,
reference input/output batches and a sample OIP REST request. It also writes
the ONNX engine's test fixtures to runtimes/onnx/testdata. See README.md for
the layout and formats.

Run with Debian's python (torch 1.13, scikit-learn 1.2, onnx 1.12):

    /usr/bin/python3 examples/models/make_models.py [--out DIR] [--testdata DIR]

Everything is seeded, so a rerun trains the same weights on the same CPU
build of torch. The generated files are committed: nothing in infergate needs
Python at run time.
"""

import argparse
import json
import os
import random

import numpy as np
import onnx
import torch
import torch.nn as nn
from sklearn.datasets import load_digits, load_iris

OPSET = 13
SEED = 20240613
PLATFORM = "onnx_onnxv1"
MAX_BATCH_SIZE = 64


def seed_everything(seed=SEED):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


# ---------------------------------------------------------------- training


def train(model, x, y, epochs, lr, batch_size=32, weight_decay=0.0):
    """Mini-batch Adam with cross entropy on the logits; returns the training accuracy."""
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = x.shape[0]
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            opt.zero_grad()
            loss = loss_fn(model.logits(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model.logits(x).argmax(dim=1) == y).float().mean().item()
    return acc


class IrisMLP(nn.Module):
    def __init__(self, hidden=16):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def logits(self, x):
        return self.net(x)

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 8x4x4
            nn.Conv2d(8, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 16x2x2
            nn.Flatten(),
        )
        self.fc = nn.Linear(64, 10)

    def logits(self, x):
        return self.fc(self.features(x))

    def forward(self, x):
        return self.logits(x)


# ------------------------------------------------------ synthetic text task
#
# Sentences of 4 to 16 words drawn from the word lists below. The label is 1
# ("positive") when the sentence holds more positive than negative words and 0
# otherwise; generated sentences never tie. Words become ids by hashing: id =
# FNV-1a-32(lowercase UTF-8 word) mod 999 + 1, so ids run 1..999 and 0 pads a
# sentence to 16 tokens. Anyone can tokenize a sentence for the model with
# that rule; unknown words hash somewhere too and act as noise.

VOCAB_SIZE = 1000
SEQ_LEN = 16

POSITIVE = """good great excellent wonderful love loved lovely happy delight
delightful amazing fantastic superb brilliant enjoy enjoyed nice best perfect
pleasant awesome beautiful fun recommend charming""".split()
NEGATIVE = """bad terrible awful horrible hate hated poor sad boring worst
disappointing dull ugly annoying broken waste mediocre painful slow rude
useless angry bland noisy""".split()
NEUTRAL = """the a an movie film book food service place it was is this that
and but very really quite some plot acting story ending staff room day night
time we i they my our with of to in on at for""".split()


def fnv1a32(word):
    h = 0x811C9DC5
    for b in word.lower().encode("utf-8"):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def token_id(word):
    return fnv1a32(word) % (VOCAB_SIZE - 1) + 1


def tokenize(words):
    ids = [token_id(w) for w in words[:SEQ_LEN]]
    return ids + [0] * (SEQ_LEN - len(ids))


def make_sentence(rng):
    while True:
        n = rng.randint(4, SEQ_LEN)
        n_pos = rng.randint(0, min(4, n))
        n_neg = rng.randint(0, min(4, n - n_pos))
        if n_pos != n_neg:
            break
    words = (
        [rng.choice(POSITIVE) for _ in range(n_pos)]
        + [rng.choice(NEGATIVE) for _ in range(n_neg)]
        + [rng.choice(NEUTRAL) for _ in range(n - n_pos - n_neg)]
    )
    rng.shuffle(words)
    return words, int(n_pos > n_neg)


class TextClassifier(nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.emb = nn.Embedding(VOCAB_SIZE, dim, padding_idx=0)
        self.fc = nn.Linear(dim, 2)

    def logits(self, tokens):
        return self.fc(self.emb(tokens).mean(dim=1))

    def forward(self, tokens):
        return torch.softmax(self.logits(tokens), dim=-1)


# ------------------------------------------------------------------ export

DTYPES = {torch.float32: "FP32", torch.int64: "INT64"}


class Floats32(list):
    """FP32 values, written in the shortest form that reads back as the same
    float32 (5.1 rather than 5.099999904632568)."""


def tensor_json(name, t):
    t = t.detach().cpu().contiguous()
    data = t.reshape(-1).tolist()
    if t.dtype == torch.float32:
        data = Floats32(data)
    return {
        "name": name,
        "datatype": DTYPES[t.dtype],
        "shape": list(t.shape),
        "data": data,
    }


def export(model, example, in_name, out_name, path, opset=OPSET, dynamic_axes=None, **kw):
    """Exports model with one input; out_name may be a list of output names.
    By default dimension 0 of every input and output is the dynamic "batch"."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    model.eval()
    out_names = out_name if isinstance(out_name, list) else [out_name]
    if dynamic_axes is None:
        dynamic_axes = {n: {0: "batch"} for n in [in_name] + out_names}
    torch.onnx.export(
        model,
        (example,),
        path,
        input_names=[in_name],
        output_names=out_names,
        dynamic_axes=dynamic_axes,
        opset_version=opset,
        do_constant_folding=True,
        **kw,
    )
    m = onnx.load(path)
    onnx.checker.check_model(m)
    # torch stamps its version in the file; keep that but drop the doc strings
    # that name local source paths, so the file does not depend on the machine.
    for node in m.graph.node:
        node.doc_string = ""
    onnx.save(m, path)


def to_json(v, indent=""):
    """JSON with objects and lists of objects indented, and lists of scalars
    (shapes, tensor data) on one line."""
    inner = indent + "  "
    if isinstance(v, dict):
        items = ['%s%s: %s' % (inner, json.dumps(k), to_json(x, inner)) for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
        items = [inner + to_json(x, inner) for x in v]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    if isinstance(v, Floats32):
        return "[" + ", ".join(repr(np.float32(x)) for x in v) + "]"
    if isinstance(v, list):
        return "[" + ", ".join(json.dumps(x) for x in v) + "]"
    return json.dumps(v)


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(to_json(obj))
        f.write("\n")


def write_model_dir(root, name, model, in_name, out_name, batches, max_batch_size, dirname=None, version="1"):
    d = os.path.join(root, dirname or name)
    export(model, batches[0], in_name, out_name, os.path.join(d, version, "model.onnx"))
    write_json(
        os.path.join(d, "config.json"),
        {"name": name, "platform": PLATFORM, "max_batch_size": max_batch_size},
    )
    cases = []
    with torch.no_grad():
        for b in batches:
            cases.append(
                {
                    "name": "batch%d" % b.shape[0],
                    "inputs": [tensor_json(in_name, b)],
                    "outputs": [tensor_json(out_name, model(b))],
                }
            )
    write_json(os.path.join(d, "reference.json"), {"model_name": name, "cases": cases})
    req = {"id": "%s-example-1" % name, "inputs": [tensor_json(in_name, batches[0])]}
    write_json(os.path.join(d, "request.json"), req)
    size = os.path.getsize(os.path.join(d, version, "model.onnx"))
    print("%-10s model.onnx %7d bytes" % (dirname or name, size))


# ----------------------------------------------------- engine test fixtures
#
# Small models under runtimes/onnx/testdata that exercise what the sample
# models do not: other opsets, weights listed as graph inputs (as exporters of
# ONNX IR version 3 do), a dynamic dimension besides the batch, and an output
# that does not follow the batch. Their weights are random: only their
# outputs on the recorded inputs matter.


class SeqMean(nn.Module):
    """tokens [batch, seq] -> embedding mean [batch, 4], seq dynamic."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 4)

    def forward(self, tokens):
        return self.emb(tokens).mean(dim=1)


class BatchMean(nn.Module):
    """x [batch, 4] -> (row means [batch], column means over the batch [4])."""

    def forward(self, x):
        return x.mean(dim=1), x.mean(dim=0)


class RowSum(nn.Module):
    """x [batch, 4] -> row sums [batch], with ReduceSum, which onnx-gomlx
    v0.3.4 does not convert: the fixture for an unsupported operator."""

    def forward(self, x):
        return x.sum(dim=1)


def write_fixtures(testdata, iris_model, iris_batches):
    os.makedirs(testdata, exist_ok=True)
    refs = {}

    def record(name, model, in_name, out_names, batches):
        cases = []
        with torch.no_grad():
            for b in batches:
                outs = model(b)
                if not isinstance(outs, tuple):
                    outs = (outs,)
                cases.append(
                    {
                        "name": "batch%d" % b.shape[0] + ("_seq%d" % b.shape[1] if b.dtype == torch.int64 else ""),
                        "inputs": [tensor_json(in_name, b)],
                        "outputs": [tensor_json(n, o) for n, o in zip(out_names, outs)],
                    }
                )
        refs[name] = cases

    for opset in (11, 17):
        name = "iris_opset%d" % opset
        export(iris_model, iris_batches[0], "input", "probabilities", os.path.join(testdata, name + ".onnx"), opset)
        record(name, iris_model, "input", ["probabilities"], iris_batches)
    name = "iris_weights_as_inputs"
    export(
        iris_model, iris_batches[0], "input", "probabilities", os.path.join(testdata, name + ".onnx"), 9,
        keep_initializers_as_inputs=True,
    )
    record(name, iris_model, "input", ["probabilities"], iris_batches)

    torch.manual_seed(SEED)
    seq = SeqMean()
    gen = torch.Generator().manual_seed(SEED)
    batches = [torch.randint(0, 50, (1, 3), generator=gen), torch.randint(0, 50, (2, 7), generator=gen)]
    export(
        seq, batches[0], "tokens", "mean", os.path.join(testdata, "seqmean.onnx"),
        dynamic_axes={"tokens": {0: "batch", 1: "seq"}, "mean": {0: "batch"}},
    )
    record("seqmean", seq, "tokens", ["mean"], batches)

    bm = BatchMean()
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 4
    export(
        bm, x, "x", ["rowmean", "colmean"], os.path.join(testdata, "batchmean.onnx"),
        dynamic_axes={"x": {0: "batch"}, "rowmean": {0: "batch"}},
    )
    record("batchmean", bm, "x", ["rowmean", "colmean"], [x[:1], x])
    export(RowSum(), x, "x", "rowsum", os.path.join(testdata, "unsupported_op.onnx"))

    write_json(os.path.join(testdata, "reference.json"), refs)
    for name in sorted(refs):
        print("fixture   %-24s %6d bytes" % (name, os.path.getsize(os.path.join(testdata, name + ".onnx"))))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=here)
    ap.add_argument(
        "--testdata",
        default=os.path.join(here, "..", "..", "runtimes", "onnx", "testdata"),
        help="where iris exported at other opsets goes (engine test fixtures)",
    )
    ap.add_argument(
        "--models",
        default="iris,digits,textclass,iris-v2",
        help="comma-separated models to make",
    )
    args = ap.parse_args()
    wanted = set(args.models.split(","))

    if "iris-v2" in wanted:
        # iris-v2: a second version of iris for the canary walkthrough in
        # the README: a wider hidden layer, trained longer from another
        # seed. Served under the name iris.
        seed_everything(SEED + 1)
        iris = load_iris()
        x = torch.tensor(iris.data, dtype=torch.float32)
        y = torch.tensor(iris.target, dtype=torch.int64)
        m = IrisMLP(hidden=32)
        acc = train(m, x, y, epochs=150, lr=0.01, batch_size=16, weight_decay=1e-3)
        print("iris-v2   train accuracy %.3f" % acc)
        batches = [x[[0]], x[[0, 50, 100]], x[[7, 23, 61, 88, 120, 149]]]
        write_model_dir(args.out, "iris", m, "input", "probabilities", batches, MAX_BATCH_SIZE, dirname="iris-v2", version="2")
    if wanted == {"iris-v2"}:
        return

    # iris: raw measurements in cm, no scaling, so clients send what they have.
    seed_everything()
    iris = load_iris()
    x = torch.tensor(iris.data, dtype=torch.float32)
    y = torch.tensor(iris.target, dtype=torch.int64)
    m = IrisMLP()
    acc = train(m, x, y, epochs=100, lr=0.01, batch_size=16, weight_decay=1e-3)
    print("iris      train accuracy %.3f" % acc)
    batches = [x[[0]], x[[0, 50, 100]], x[[7, 23, 61, 88, 120, 149]]]
    write_model_dir(args.out, "iris", m, "input", "probabilities", batches, MAX_BATCH_SIZE)
    write_fixtures(args.testdata, m, batches)

    # digits: 8x8 images with pixels 0..16, scaled to 0..1 by the client.
    seed_everything()
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.int64)
    m = DigitsCNN()
    acc = train(m, x, y, epochs=30, lr=0.005, batch_size=32)
    print("digits    train accuracy %.3f" % acc)
    batches = [x[[0]], x[[1, 2, 3]], x[[10, 200, 400, 800, 1200, 1796]]]
    write_model_dir(args.out, "digits", m, "image", "logits", batches, MAX_BATCH_SIZE)

    # textclass: the synthetic sentiment task above.
    seed_everything()
    rng = random.Random(SEED)
    sents = [make_sentence(rng) for _ in range(4000)]
    x = torch.tensor([tokenize(w) for w, _ in sents], dtype=torch.int64)
    y = torch.tensor([l for _, l in sents], dtype=torch.int64)
    m = TextClassifier()
    acc = train(m, x, y, epochs=10, lr=0.01, batch_size=64, weight_decay=1e-4)
    print("textclass train accuracy %.3f" % acc)
    examples = [
        "the movie was really great and i loved the acting".split(),
        "terrible service and the food was bland".split(),
        "a wonderful book with a boring ending but superb plot".split(),
    ]
    ex = torch.tensor([tokenize(w) for w in examples], dtype=torch.int64)
    batches = [ex[[0]], ex, x[:5]]
    write_model_dir(args.out, "textclass", m, "tokens", "probabilities", batches, MAX_BATCH_SIZE)


if __name__ == "__main__":
    main()
