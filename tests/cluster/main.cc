// testcluster: the local test cluster of SPEC.md §8.
//
//   testcluster up --state DIR [--runtime process|container]
//                                   start in the background, wait until it answers, print the
//                                   kubeconfig path as the last line. --runtime: pods as host
//                                   processes (default) or as podman containers
//   testcluster down --state DIR    stop the server and every pod process
//   testcluster serve --state DIR   run in the foreground (what `up` starts)

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include "tests/cluster/api.h"
#include "tests/cluster/apiserver.h"
#include "tests/cluster/certs.h"
#include "tests/cluster/frontend.h"
#include "tests/cluster/https_server.h"
#include "tests/cluster/util.h"
#ifdef PR_CLUSTER_HAVE_KUBELET
#include "tests/cluster/kubelet/podman.h"
#endif

namespace parallelrun::rt::cluster {
namespace {

namespace fs = std::filesystem;

int Usage() {
  std::cerr << "usage: testcluster up|down|serve --state DIR [--port N] [--no-kubelet] "
               "[--runtime process|container]\n";
  return 2;
}

std::string SelfExe() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "testcluster";
  buf[n] = '\0';
  return buf;
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0) return false;
  // A zombie still answers kill(0); look at its state.
  auto stat = ReadFileText("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return false;
  size_t close = stat->rfind(')');
  return !(close != std::string::npos && close + 2 < stat->size() && (*stat)[close + 2] == 'Z');
}

pid_t ReadPid(const std::string& dir) {
  auto text = ReadFileText(dir + "/server.pid");
  return text ? static_cast<pid_t>(std::atol(text->c_str())) : 0;
}

std::string WriteKubeconfig(const std::string& dir, int port, const std::string& token) {
  std::string path = dir + "/kubeconfig";
  std::string text =
      "apiVersion: v1\n"
      "kind: Config\n"
      "clusters:\n"
      "- name: testcluster\n"
      "  cluster:\n"
      "    server: https://127.0.0.1:" +
      std::to_string(port) +
      "\n"
      "    certificate-authority: " +
      dir +
      "/ca.crt\n"
      "contexts:\n"
      "- name: testcluster\n"
      "  context:\n"
      "    cluster: testcluster\n"
      "    user: admin\n"
      "    namespace: default\n"
      "current-context: testcluster\n"
      "preferences: {}\n"
      "users:\n"
      "- name: admin\n"
      "  user:\n"
      "    token: " +
      token + "\n";
  WriteFileAtomic(path, text, 0600);
  return path;
}

int Serve(const std::string& dir, int port, bool with_kubelet, const std::string& runtime) {
  std::string error;
  if (!MakeDirs(dir) || !EnsureCertificates(dir, &error)) {
    std::cerr << "testcluster: " << (error.empty() ? "cannot create " + dir : error) << "\n";
    return 1;
  }
  std::string token;
  if (auto t = ReadFileText(dir + "/admin-token")) token = Trim(*t);
  if (token.empty()) {
    token = "admin." + RandomHex(24);
    WriteFileAtomic(dir + "/admin-token", token, 0600);
  }
  // Block the stop signals before any thread starts, so only sigwait sees them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  ApiServer api(dir);
  if (!api.Start(&error)) {
    std::cerr << "testcluster: " << error << "\n";
    return 1;
  }
  Frontend frontend(&api, token, dir);
  HttpsServer server(
      dir + "/server.crt", dir + "/server.key", [&](const HttpRequest& req, HttpResponder& resp) {
        try {
          frontend.Handle(req, resp);
        } catch (const std::exception& e) {
          // A bug must not take the whole cluster down: answer 500 and log it.
          std::cerr << "testcluster: " << req.method << " " << req.target
                    << ": internal error: " << e.what() << std::endl;
          resp.Send(
              500, "application/json",
              MakeError(500, "InternalError", std::string("Internal error occurred: ") + e.what())
                  .ToStatus()
                  .dump());
        }
      });
  // Reuse the previous port when possible, so an existing kubeconfig stays valid.
  if (port == 0) {
    if (auto p = ReadFileText(dir + "/server.port")) port = std::atoi(p->c_str());
  }
  if (!server.Start("127.0.0.1", port, &error)) {
    if (port == 0 || !server.Start("127.0.0.1", 0, &error)) {
      std::cerr << "testcluster: " << error << "\n";
      return 1;
    }
  }
  port = server.port();
  frontend.SetServerAddress("127.0.0.1:" + std::to_string(port));
  api.SetServingAddress("127.0.0.1", port);
  WriteFileAtomic(dir + "/server.port", std::to_string(port));
  WriteFileAtomic(dir + "/server.pid", std::to_string(getpid()));
  std::string kubeconfig = WriteKubeconfig(dir, port, token);

  std::unique_ptr<Kubelet> kubelet;
#ifdef PR_CLUSTER_HAVE_KUBELET
  if (with_kubelet) {
    KubeletContext ctx;
    ctx.api = &api;
    ctx.state_dir = dir;
    ctx.node_name = kNodeName;
    ctx.api_host = "127.0.0.1";
    ctx.api_port = port;
    ctx.ca_file = dir + "/ca.crt";
    ctx.runtime = runtime;
    ctx.service_account_token = [&api](const std::string& ns, const std::string& name) {
      return api.ServiceAccountToken(ns, name);
    };
    api.SetKubeletAttached(true);
    kubelet = StartKubelet(ctx);
  }
#else
  (void)with_kubelet;
  (void)runtime;
#endif
  WriteFileAtomic(dir + "/server.ready", std::to_string(port));
  std::cerr << "testcluster: serving on https://127.0.0.1:" << port << " (" << kubeconfig << ")"
            << std::endl;

  int sig = 0;
  sigwait(&set, &sig);
  std::cerr << "testcluster: signal " << sig << ", stopping" << std::endl;
  std::error_code ec;
  fs::remove(dir + "/server.ready", ec);
  if (kubelet) kubelet->Stop();
  frontend.Stop();
  server.Stop();
  api.Stop();
  fs::remove(dir + "/server.pid", ec);
  return 0;
}

int Up(const std::string& dir, int port, bool with_kubelet, const std::string& runtime) {
  if (!MakeDirs(dir)) {
    std::cerr << "testcluster up: cannot create the state folder " << dir << "\n";
    return 1;
  }
#ifdef PR_CLUSTER_HAVE_KUBELET
  if (with_kubelet && runtime == "container" && !PodmanAvailable()) {
    std::cerr << "testcluster up: --runtime container needs podman (with runc) on PATH, or "
                 "TESTCLUSTER_PODMAN; `"
              << PodmanBinary() << " --version` failed\n";
    return 1;
  }
#endif
  pid_t running = ReadPid(dir);
  if (ProcessAlive(running) && fs::exists(dir + "/server.ready")) {
    std::cout << dir << "/kubeconfig" << std::endl;
    return 0;
  }
  std::error_code ec;
  fs::remove(dir + "/server.ready", ec);
  std::string exe = SelfExe();
  pid_t child = fork();
  if (child < 0) {
    std::cerr << "testcluster up: fork failed: " << strerror(errno) << "\n";
    return 1;
  }
  if (child == 0) {
    setsid();
    int in = open("/dev/null", O_RDONLY);
    int out = open((dir + "/server.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    std::string port_arg = std::to_string(port);
    std::vector<const char*> argv = {exe.c_str(), "serve",  "--state",
                                     dir.c_str(), "--port", port_arg.c_str()};
    if (!with_kubelet) argv.push_back("--no-kubelet");
    argv.push_back("--runtime");
    argv.push_back(runtime.c_str());
    argv.push_back(nullptr);
    execv(exe.c_str(), const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(dir + "/server.ready")) {
      std::cout << dir << "/kubeconfig" << std::endl;
      return 0;
    }
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child) {
      std::cerr << "testcluster up: the server exited during start-up; see " << dir
                << "/server.log:\n";
      if (auto log = ReadFileText(dir + "/server.log")) std::cerr << *log;
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::cerr << "testcluster up: the server did not answer within 30 s; see " << dir
            << "/server.log\n";
  kill(child, SIGKILL);
  return 1;
}

int Down(const std::string& dir) {
  pid_t pid = ReadPid(dir);
  std::error_code ec;
  if (ProcessAlive(pid)) {
    kill(pid, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    while (ProcessAlive(pid) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (ProcessAlive(pid)) {
      std::cerr << "testcluster down: the server did not stop in 15 s; killing it\n";
      kill(pid, SIGKILL);
      while (ProcessAlive(pid)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
#ifdef PR_CLUSTER_HAVE_KUBELET
      KillLeftoverPodProcesses(dir);
#endif
    }
  }
#ifdef PR_CLUSTER_HAVE_KUBELET
  KillLeftoverPodProcesses(dir);
#endif
  fs::remove(dir + "/server.pid", ec);
  fs::remove(dir + "/server.ready", ec);
  return 0;
}

}  // namespace
}  // namespace parallelrun::rt::cluster

int main(int argc, char** argv) {
  using namespace parallelrun::rt::cluster;
  if (argc < 2) return Usage();
  std::string cmd = argv[1];
  std::string dir;
  int port = 0;
  bool kubelet = true;
  std::string runtime = "process";
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--state" && i + 1 < argc) {
      dir = argv[++i];
    } else if (a.rfind("--state=", 0) == 0) {
      dir = a.substr(8);
    } else if (a == "--port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (a == "--no-kubelet") {
      kubelet = false;
    } else if (a == "--runtime" && i + 1 < argc) {
      runtime = argv[++i];
    } else if (a.rfind("--runtime=", 0) == 0) {
      runtime = a.substr(10);
    } else {
      std::cerr << "testcluster: unknown argument " << a << "\n";
      return Usage();
    }
  }
  if (dir.empty()) {
    std::cerr << "testcluster: --state DIR is required\n";
    return Usage();
  }
  dir = std::filesystem::absolute(dir).lexically_normal().string();
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  if (runtime != "process" && runtime != "container") {
    std::cerr << "testcluster: --runtime must be process or container, not \"" << runtime << "\"\n";
    return Usage();
  }
  if (cmd == "up") return Up(dir, port, kubelet, runtime);
  if (cmd == "down") return Down(dir);
  if (cmd == "serve") return Serve(dir, port, kubelet, runtime);
  return Usage();
}
