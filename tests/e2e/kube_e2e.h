#pragma once
// The e2e_kube* suites' shared step: the fake kube-apiserver served inside the mesh's control
// netns (where the aggregator dials it) and the kubeconfig the aggregator reads.

#include <string>

#include "tests/e2e/mesh.h"
#include "tests/support/fake_kube_apiserver.h"

namespace meshprobe::e2e {

// Starts `fake` from a thread that entered `control`, so its listener is 127.0.0.1:PORT in
// the control netns, then writes `kubeconfig` (mode 0600): the fake's URL, the test CA, a
// user with `token`. Throws HarnessError naming what failed.
inline void startFakeKubeApiServerIn(const TestNetns& control, test::FakeKubeApiServer& fake,
                                     const std::string& kubeconfig, const std::string& token) {
  bool started = false;
  runInNetnsThread(control.path(), [&] { started = fake.start(0); });
  if (!started)
    throw HarnessError("fake kube-apiserver in the control netns " + control.path() + ": start failed");
  writeFile(kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: " + fake.url() +
                "\n    certificate-authority: " + mtlsFile("ca.pem") +
                "\nusers:\n- name: meshprobe-aggregator\n  user:\n    token: " + token +
                "\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: meshprobe-aggregator\n"
                "current-context: e2e\n",
            0600);
}

}  // namespace meshprobe::e2e
