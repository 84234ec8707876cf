"""Stage classifier: a small CNN for scoring samples, models/classifier.pt and its accuracy
(no classifier for unlabelled images: the scores that need one are left out)."""

import sys

from vaepipe.atomic import write_json
from vaepipe.evaluation.classifier import accuracy, classifier_needs, save_classifier, train_classifier
from vaepipe.stage import require, run_stage
from vaepipe.data.splits import load_split, split_shape
from vaepipe.layout import class_names
from vaepipe.outputs import CLASSES, CLASSIFIER, METRICS, normalized
from vaepipe.resources import check_fits
from vaepipe.model.device import pick_device


def main(params):
    device = pick_device(params.train.device)
    train_path = require(normalized("train"), "normalize")
    classes = len(class_names(CLASSES))
    if not classes:
        print("unlabelled images: no scoring classifier, so samples.fd, samples.class_balance and "
              "samples_gmm are left out", file=sys.stderr)
        write_json(METRICS / "classifier.json", {"classifier": {}})
        save_classifier(CLASSIFIER, None)
        return
    check_fits(classifier_needs(params.classifier.batch_size, *split_shape(train_path), classes), device)
    test_path = require(normalized("test"), "normalize")
    # the training set is let go before the test set is read: one of them in memory at a time
    model = train_classifier(params.classifier, *load_split(train_path), classes, device=device)
    test_x, test_y = load_split(test_path)
    test_accuracy = accuracy(model, test_x.to(device), test_y.to(device))
    print(f"classifier test accuracy: {test_accuracy:.4f}", flush=True)
    write_json(METRICS / "classifier.json", {"classifier": {"accuracy": test_accuracy}})
    save_classifier(CLASSIFIER, model)


if __name__ == "__main__":
    run_stage(main)
