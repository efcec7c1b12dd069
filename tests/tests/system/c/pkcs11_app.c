/* A long-running PKCS#11 application, as host applications are written in C, for the
 * card lifecycle system tests (lifecycle_*.rs): it keeps one module instance, and the
 * sessions and logins it opened, alive while the test renews, revokes, suspends or
 * resumes the card underneath it. Driven one command per line on stdin; every command
 * answers exactly one line on stdout, "name=0xRV" followed by values:
 *   open SLOT            C_OpenSession                    open=0xRV session=H
 *   login PIN            C_Login (CKU_USER)               login=0xRV
 *   key                  C_FindObjects(private keys)      key=0xRV handle=H count=N
 *   sign rsa|ec IN OUT   C_SignInit+C_Sign with that key  sign=0xRV len=N (OUT = signature)
 *   session              C_GetSessionInfo                 session=0xRV state=S
 *   slots                C_GetSlotList(tokenPresent=TRUE) slots=0xRV list=A,B
 *   event                C_WaitForSlotEvent(DONT_BLOCK)   event=0xRV slot=S
 *   quit                 C_Finalize, then exit            quit=0xRV
 * Usage: pkcs11_app MODULE (prints "initialize=0xRV" first). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST_PTR p11;
static CK_SESSION_HANDLE session;
static CK_OBJECT_HANDLE key;

static void answer(const char *name, CK_RV rv, const char *rest)
{
    printf("%s=0x%lx%s%s\n", name, (unsigned long)rv, rest[0] ? " " : "", rest);
    fflush(stdout);
}

/* The authentication key, or with `signing` the document-signing key (the
 * one with CKA_ALWAYS_AUTHENTICATE). */
static void find_key(const char *which)
{
    CK_OBJECT_CLASS class = CKO_PRIVATE_KEY;
    CK_BBOOL always = strcmp(which, "signing") == 0 ? CK_TRUE : CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &class, sizeof class},
                           {CKA_ALWAYS_AUTHENTICATE, &always, sizeof always}};
    CK_OBJECT_HANDLE found[16];
    CK_ULONG n = 0;
    char rest[96];
    CK_RV rv = p11->C_FindObjectsInit(session, tmpl, 2);
    if (rv == CKR_OK) {
        rv = p11->C_FindObjects(session, found, 16, &n);
        p11->C_FindObjectsFinal(session);
    }
    if (rv == CKR_OK && n > 0)
        key = found[0];
    snprintf(rest, sizeof rest, "handle=%lu count=%lu", (unsigned long)key, (unsigned long)n);
    answer("key", rv, rest);
}

static void sign(const char *kind, const char *in_path, const char *out_path)
{
    CK_MECHANISM mech = {strcmp(kind, "ec") == 0 ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS,
                         NULL, 0};
    CK_BYTE data[4096];
    CK_BYTE sig[1024];
    CK_ULONG sig_len = sizeof sig;
    char rest[64];
    FILE *in = fopen(in_path, "rb");
    if (!in) {
        answer("sign", CKR_ARGUMENTS_BAD, "error=cannot-read-input");
        return;
    }
    size_t len = fread(data, 1, sizeof data, in);
    fclose(in);
    CK_RV rv = p11->C_SignInit(session, &mech, key);
    if (rv == CKR_OK)
        rv = p11->C_Sign(session, data, len, sig, &sig_len);
    if (rv == CKR_OK) {
        FILE *out = fopen(out_path, "wb");
        if (!out || fwrite(sig, 1, sig_len, out) != sig_len) {
            answer("sign", CKR_ARGUMENTS_BAD, "error=cannot-write-output");
            if (out)
                fclose(out);
            return;
        }
        fclose(out);
    }
    snprintf(rest, sizeof rest, "len=%lu", rv == CKR_OK ? (unsigned long)sig_len : 0UL);
    answer("sign", rv, rest);
}

static void slots(void)
{
    CK_SLOT_ID list[64];
    CK_ULONG n = 64;
    char rest[512] = "list=";
    CK_RV rv = p11->C_GetSlotList(CK_TRUE, list, &n);
    for (CK_ULONG i = 0; rv == CKR_OK && i < n; i++) {
        char one[24];
        snprintf(one, sizeof one, "%s%lu", i ? "," : "", (unsigned long)list[i]);
        strncat(rest, one, sizeof rest - strlen(rest) - 1);
    }
    answer("slots", rv, rest);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODULE\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    CK_C_GetFunctionList get_list = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
    if (!get_list || get_list(&p11) != CKR_OK) {
        fprintf(stderr, "C_GetFunctionList failed\n");
        return 2;
    }
    answer("initialize", p11->C_Initialize(NULL), "");

    char line[1024];
    while (fgets(line, sizeof line, stdin)) {
        char cmd[32] = "", a[480] = "", b[480] = "", c[480] = "";
        char rest[96];
        line[strcspn(line, "\r\n")] = 0;
        sscanf(line, "%31s %479s %479s %479s", cmd, a, b, c);
        if (strcmp(cmd, "open") == 0) {
            CK_RV rv = p11->C_OpenSession(strtoul(a, NULL, 10), CKF_SERIAL_SESSION, NULL, NULL,
                                          &session);
            snprintf(rest, sizeof rest, "session=%lu", (unsigned long)session);
            answer("open", rv, rest);
        } else if (strcmp(cmd, "login") == 0) {
            answer("login", p11->C_Login(session, CKU_USER, (CK_UTF8CHAR_PTR)a, strlen(a)), "");
        } else if (strcmp(cmd, "key") == 0) {
            find_key(a);
        } else if (strcmp(cmd, "sign") == 0) {
            sign(a, b, c);
        } else if (strcmp(cmd, "session") == 0) {
            CK_SESSION_INFO info;
            CK_RV rv = p11->C_GetSessionInfo(session, &info);
            snprintf(rest, sizeof rest, "state=%lu", rv == CKR_OK ? (unsigned long)info.state : 0UL);
            answer("session", rv, rest);
        } else if (strcmp(cmd, "slots") == 0) {
            slots();
        } else if (strcmp(cmd, "event") == 0) {
            CK_SLOT_ID slot = 0;
            CK_RV rv = p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL);
            snprintf(rest, sizeof rest, "slot=%lu", (unsigned long)slot);
            answer("event", rv, rest);
        } else if (strcmp(cmd, "quit") == 0) {
            answer("quit", p11->C_Finalize(NULL), "");
            return 0;
        } else {
            answer("unknown", CKR_ARGUMENTS_BAD, cmd);
        }
    }
    p11->C_Finalize(NULL);
    return 0;
}
