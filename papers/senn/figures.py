"""Figures for senn_mnist / senn_tabular, each regenerated from a run's saved
results: accuracy and Lipschitz estimate against lambda (the paper's trade-off
figure), box plots of the estimate per explainer, concept prototypes (MNIST) and
relevance bars (theta per concept) for single inputs."""

from __future__ import annotations

from common import plotting

NAMES = {"senn": "SENN", "gradient": "Saliency", "grad_x_input": "Grad x Input",
         "integrated_gradients": "Int. Grad.", "lime": "LIME", "kernel_shap": "Kernel SHAP",
         "occlusion": "Occlusion"}
EST = {"pgd": "projected gradient", "random": "random search", "discrete": "discrete (test points)"}


def tradeoff(record, out):
    """Test accuracy and the local Lipschitz estimate of SENN's theta (projected
    gradient; median and quartiles over the test inputs) against lambda."""
    import numpy as np

    sweep = sorted(record.result("sweep").values(), key=lambda r: r["lambda"])
    lams = [r["lambda"] for r in sweep]
    pos = np.arange(len(lams))
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(9, 3.4))
    a1.plot(pos, [r["test_acc"] for r in sweep], "o-")
    a1.set_ylabel("test accuracy (%)")
    lip = [np.array(r["lipschitz"]) for r in sweep]
    a2.boxplot(lip, positions=pos, widths=0.5, showfliers=False)
    a2.plot(pos, [np.median(v) for v in lip], "o-", color="C1")
    a2.set_ylabel("local Lipschitz estimate of theta")
    for a in (a1, a2):
        a.set_xticks(pos, [f"{v:g}" for v in lams])
        a.set_xlabel("lambda (robustness weight)")
    fig.suptitle(f"{record.meta.get('experiment', '')}: accuracy and stability against lambda", fontsize=9)
    return plotting.save(fig, out / "tradeoff")


def lipschitz_boxes(record, out):
    """The local Lipschitz estimate per explainer: left, the continuous estimate
    (projected gradient for SENN and the gradient-based explainers, random search
    for LIME, Kernel SHAP and Occlusion, as labelled); right, the discrete one
    (other test points within eps)."""
    res = record.result("explainers")
    names = list(res["results"])
    fig, (a1, a2) = plotting.subplots(1, 2, figsize=(11, 3.8))
    data, labels = [], []
    for n in names:
        est = res["estimator"][n]
        data.append(res["results"][n]["estimates"][est])
        labels.append(f"{NAMES.get(n, n)}\n({'PGD' if est == 'pgd' else 'random'})")
    a1.boxplot(data, showfliers=True)
    a1.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    a1.set_yscale("log")
    a1.set_ylabel("local Lipschitz estimate (ball)")
    disc = [[v for v in res["results"][n]["estimates"]["discrete"] if v is not None] or [float("nan")]
            for n in names]
    a2.boxplot(disc, showfliers=True)
    a2.set_xticks(range(1, len(names) + 1), [NAMES.get(n, n) for n in names], fontsize=7)
    a2.set_yscale("log")
    a2.set_ylabel("discrete estimate (test points within eps)")
    fig.suptitle(f"SENN (lambda = {res['compare_lambda']:g}) vs post-hoc explainers of an unregularised model",
                 fontsize=9)
    return plotting.save(fig, out / "lipschitz_boxes")


def prototypes(record, out):
    """MNIST: the 8 training images that activate each learned concept most."""
    ex = record.result("examples")
    protos = ex["prototypes"]  # k x 8 x 28 x 28
    k, n = protos.shape[:2]
    fig, axes = plotting.subplots(k, n, figsize=(1.0 * n, 1.05 * k), squeeze=False)
    for i in range(k):
        for j in range(n):
            ax = axes[i][j]
            ax.imshow(protos[i, j].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"concept {i + 1}", fontsize=8)
    fig.suptitle("Concept prototypes: training images maximising each concept h_k(x)", fontsize=9)
    return plotting.save(fig, out / "prototypes")


def relevances(record, out):
    """theta(x) for the predicted class, per concept, for four test inputs (with the
    input image on MNIST)."""
    ex = record.result("examples")
    theta, pred, lab = ex["relevance_theta"], ex["relevance_pred"], ex["relevance_label"]
    names = record.result("explainers").get("feature_names")
    image = ex["relevance_inputs"].dim() == 4
    m, k = theta.shape
    fig, axes = plotting.subplots(m, 2 if image else 1, figsize=(7 if image else 9, 1.9 * m), squeeze=False)
    for i in range(m):
        col = 0
        if image:
            axes[i][0].imshow(ex["relevance_inputs"][i, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i][0].set_xticks([]), axes[i][0].set_yticks([])
            axes[i][0].set_title(f"label {int(lab[i])}, predicted {int(pred[i])}", fontsize=8)
            col = 1
        ax = axes[i][col]
        v = theta[i].numpy()
        ax.bar(range(k), v, color=["C2" if a >= 0 else "C3" for a in v])
        ax.set_ylabel("theta", fontsize=8)
        if names and not image:
            ax.set_title(f"label {int(lab[i])}, predicted {int(pred[i])}", fontsize=8)
            if i == m - 1:
                ax.set_xticks(range(k), names, rotation=90, fontsize=6)
            else:
                ax.set_xticks([])
        else:
            ax.set_xticks(range(k), [f"c{j + 1}" for j in range(k)], fontsize=7)
    fig.suptitle("SENN relevances theta(x) of the predicted class, per concept", fontsize=9)
    return plotting.save(fig, out / "relevances")
