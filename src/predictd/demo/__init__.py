"""The demo models: a 3-class sentiment classifier and a tabular RandomForest."""

from predictd.demo.train import DemoModel, train_sentiment, train_tabular

__all__ = ["DemoModel", "train_sentiment", "train_tabular"]
