"""The idle pipeline's shortcut through the real parts: the classifier service in this process
on the real awsiotsdk client over ``ggic.local``'s IPC server, a real DLR model through
libdlr.so, real photos decoded by OpenCV. A request that finds the pipeline idle is read,
decoded and preprocessed on the inference thread itself (one thread hand-off instead of two,
see ``ggic.classifier.dispatch``), and its answer is the same as classifying the photo in
process."""

from __future__ import annotations

import queue
import threading

import pytest

from ggic.classifier.inputs import InputLimits
from ggic.classifier.model import load_model
from ggic.classifier.pipeline import ClassificationPipeline
from ggic.classifier.profiles import resolve_profile
from ggic.classifier.service import ClassifierService
from ggic.ipc import IpcClient
from ggic.messages import ImageSource, SourceKind
from ggic.modelgen.testnets import write_neo_like
from test_components_ipc import CLASSIFIER, recipe_defaults


@pytest.fixture
def service(server, connect, tmp_path, photos):
    net = write_neo_like(tmp_path / "vgg16", seed=3)
    config = {**recipe_defaults(CLASSIFIER), "ModelDir": str(net.model_dir),
              "ModelProfile": "neo-vgg16", "LabelsPath": str(net.labels_path),
              "AllowedImageDirs": [str(p.parent) for p in photos[:1]], "Workers": "1",
              "MetricsInterval": "0", "ScoreThreshold": "0"}
    ipc = IpcClient(client=connect(CLASSIFIER, configuration=config,
                                   access_control=config["accessControl"]))
    svc = ClassifierService(ipc)
    svc.start()
    serving = threading.Thread(target=svc.serve, daemon=True)
    serving.start()
    yield svc, net
    svc.stop()
    serving.join(10)


def test_a_request_to_an_idle_pipeline_is_prepared_on_the_inference_thread(
        service, server, photos, mocker):
    svc, net = service
    prepared_on: list[str] = []
    real_prepare = ClassificationPipeline.prepare

    def recording_prepare(self, source, limits):
        prepared_on.append(threading.current_thread().name)
        return real_prepare(self, source, limits)

    mocker.patch.object(ClassificationPipeline, "prepare", recording_prepare)
    results: queue.Queue = queue.Queue()
    server.subscribe("local/result", lambda _t, m: results.put(m))
    expected_model = load_model(str(net.model_dir), resolve_profile("neo-vgg16"),
                                str(net.labels_path), warm_up=False)
    expected = ClassificationPipeline(expected_model)
    for i, photo in enumerate(photos[:3]):  # one at a time: each finds the pipeline idle
        server.publish("local/inference", {"request_id": f"r{i}", "image_path": str(photo)})
        answer = results.get(timeout=30)
        assert answer["request_id"] == f"r{i}" and answer["status"] == "ok", answer
        predictions, _ = expected.classify(ImageSource(SourceKind.PATH, str(photo)),
                                           InputLimits(), 5, 0.0)
        assert [(p["label"], round(p["score"], 4)) for p in answer["predictions"]] == \
            [(p.label, round(p.score, 4)) for p in predictions]
    expected.close()
    # three in the service (the in-process reference ran on this thread)
    assert [name for name in prepared_on if name.startswith("ggic-")] == ["ggic-inference"] * 3
