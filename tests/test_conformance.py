"""Every registered plugin runs the conformance suite of its kind."""

from eigenflow.testing import (
    ConstraintConformance,
    DatasetConformance,
    LayerConformance,
    MetricConformance,
    ModelConformance,
    PipelineConformance,
    SolverConformance,
    TraversalConformance,
)


class TestSolvers(SolverConformance):
    pass


class TestLayers(LayerConformance):
    pass


class TestMetrics(MetricConformance):
    pass


class TestConstraints(ConstraintConformance):
    pass


class TestTraversals(TraversalConformance):
    pass


class TestModels(ModelConformance):
    pass


class TestDatasets(DatasetConformance):
    pass


class TestPipelines(PipelineConformance):
    pass
